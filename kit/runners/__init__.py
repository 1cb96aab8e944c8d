"""Stage 3, runner binaries: the C++ runner built against the executorch wheel or a source tree,
toolchains per platform, the pybind child runner, and invoking a runner on a transport."""

__all__ = [  # the sub-package's public modules: `from kit.runners import *`, or import each by name
    "build",
    "invoke",
    "pathrunner",
    "pybind_child",
    "recipes",
    "source",
    "tensorfile",
    "toolchains",
]
