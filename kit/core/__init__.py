"""Foundations every stage uses: errors, names (validated before they become paths or keys),
the data root, atomic files, locks, platforms, versions and the settings object."""

__all__ = [  # the sub-package's public modules: `from kit.core import *`, or import each by name
    "atomic",
    "compat",
    "environment",
    "errors",
    "home",
    "jsonfile",
    "lifetime",
    "limits",
    "locks",
    "names",
    "platforms",
    "settings",
    "versions",
]
