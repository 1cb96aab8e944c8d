"""Versions of the packages a number depends on (recorded with every export, runner and run)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def executorch_version() -> str:
    return package_version("executorch") or "not installed"
