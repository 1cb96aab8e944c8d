"""Stage 3, runner binaries: the C++ runner built against the executorch wheel or a source tree,
toolchains per platform, the pybind child runner, and invoking a runner on a transport."""
