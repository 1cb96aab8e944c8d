"""Stage 4, reading what a run recorded: ETDump parsing, the program map a trace is read
against, kernel naming from operator names and XNNPACK logs."""

__all__ = [  # the sub-package's public modules: `from kit.trace import *`, or import each by name
    "etdump",
    "kernels",
    "modules",
    "program",
    "simpleperf",
]
