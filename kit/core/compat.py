"""What differs between the Pythons the kit runs on (3.10 to 3.13): TOML reading is in the standard
library from 3.11 (tomllib), in the `tomli` package before (the same API)."""

from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["tomllib"]
