"""The `sme2` command line, one module per command group (models, devices, profiling, warehouse,
analysis) over shared options in `common`; `main` assembles them with the plugged-in commands."""

__all__ = [  # the sub-package's public modules: `from kit.cli import *`, or import each by name
    "agent",
    "analysis",
    "common",
    "configs",
    "devices",
    "docs",
    "main",
    "models",
    "profiling",
    "skills",
    "warehouse",
]
