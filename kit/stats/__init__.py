"""Stage 6, numbers from one run: robust statistics, operator categories, the per-run summary
written beside the trace (Arm-kit compatible files)."""

__all__ = [  # the sub-package's public modules: `from kit.stats import *`, or import each by name
    "armkit",
    "categories",
    "robust",
    "summary",
]
