"""Every SME2_* environment variable the platform reads, in one list, and the one way to read them.

A variable that an orchestrated run may need to change (where the shared store is, the export
cache, the tools folder) is also a run setting: `kit.core.settings.Settings` has a field for it
(`setting` below), the Dagster resource has the same field (set it in run config or with
`dg.EnvVar`), and a set field overrides the variable for that run (`overridden`). docs/environment.md
lists the same variables (a test keeps them equal), and no module reads an SME2_* variable any other
way (tests/test_environment.py)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping


@dataclass(frozen=True)
class Variable:
    name: str
    meaning: str
    default: str  # what happens when it is unset, in words
    setting: str | None = None  # the Settings / Dagster resource field that overrides it for a run


BUILD_CACHE_DEFAULT = "~/.cache/sme2/builds"
VARIABLES: tuple[Variable, ...] = (
    Variable("SME2_HOME", "the data root: runs, warehouse, reports, Dagster instance", "./.sme2", "home"),
    Variable("SME2_MODELS", "the model packages folder", "models/ of this checkout", "models_dir"),
    Variable(
        "SME2_TOOLS",
        "one tools folder (QEMU, the aarch64 executorch package, probes) shared by data roots",
        "<data root>/tools",
        "tools",
    ),
    Variable("SME2_QEMU", "the qemu-aarch64 (>= 10.1) to run emulated targets with", "PATH, then the tools folder"),
    Variable(
        "SME2_EXPORT_CACHE",
        "finished exports cached by content hash across data roots; empty, 0 or off: no cache",
        "~/.cache/sme2/exports",
        "export_cache",
    ),
    Variable(
        "SME2_BUILD_CACHE",
        "builds shared by every data root on this machine: the counting QEMU, the native runners, the "
        "Vega bundle of report pages",
        BUILD_CACHE_DEFAULT,
    ),
    Variable("SME2_SOURCE_CACHE", "ExecuTorch source trees `sme2 source fetch` clones", "~/.cache/sme2/sources"),
    Variable(
        "SME2_SHARED_STORE",
        "the lab's DuckLake data folder: runs are published there and read back with the local ones",
        "unset: no shared store",
        "shared_store",
    ),
    Variable(
        "SME2_SHARED_CATALOG",
        "the DuckLake catalog: postgres:<libpq conninfo> or sqlite:<file>",
        "sqlite:<shared store>/catalog.sqlite",
        "shared_catalog",
    ),
    Variable("SME2_NIGHTLY_CRON", "when the nightly schedules run (cron, read when definitions load)", "0 2 * * *"),
    Variable("SME2_DAGSTER_PG_URL", "lab mode: the Dagster instance's PostgreSQL", "unset: SQLite instance"),
    Variable("SME2_CELERY_BROKER", "lab mode: the Celery broker (e.g. redis://lab-server:6379/0)", "unset: one host"),
    Variable("SME2_CELERY_BACKEND", "lab mode: the Celery result backend", "the broker"),
    Variable("SME2_LAB_STEP_TIMEOUT_S", "lab mode: a step running longer than this is failed, seconds", "21600 (6 h)"),
    Variable(
        "SME2_CELERY_VISIBILITY_TIMEOUT_S",
        "lab mode: a claimed step is given to another worker after this, seconds",
        "twice the step timeout",
    ),
)
BY_NAME = {v.name: v for v in VARIABLES}
BY_SETTING = {v.setting: v for v in VARIABLES if v.setting}


def get(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """The variable's value as set (None when unset); `env` replaces os.environ (tests, a child's
    environment). Only listed variables can be read: an unlisted name is a programming error."""
    if name not in BY_NAME:
        raise KeyError(f"{name} is not in kit.core.environment.VARIABLES: add it there (and to docs/environment.md)")
    return (os.environ if env is None else env).get(name)


def build_cache() -> Path:
    """$SME2_BUILD_CACHE (default ~/.cache/sme2/builds): builds every data root on this machine shares."""
    return Path(get("SME2_BUILD_CACHE") or BUILD_CACHE_DEFAULT).expanduser()


@contextmanager
def overridden(values: Mapping[str, str]) -> Iterator[None]:
    """Set listed variables for the duration (a run whose settings override them), then restore
    each to what it was, unset included."""
    for name in values:
        get(name)  # listed
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old
