"""Stage 9, across runs: SME2 on/off comparison, data movement, regressions, validation gates."""

__all__ = [  # the sub-package's public modules: `from kit.analysis import *`, or import each by name
    "advice",
    "compare",
    "datamovement",
    "kernelview",
    "regress",
    "validation",
]
