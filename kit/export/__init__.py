"""Stage 5, model package -> ExecuTorch program: .pte + ETRecord + program map + inputs, with a
numerical check run by the native runner."""

__all__ = [  # the sub-package's public modules: `from kit.export import *`, or import each by name
    "cache",
    "exporter",
    "graph",
]
