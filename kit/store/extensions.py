"""DuckDB extensions from installed Python packages, never from the network: DuckLake (the lab's
shared warehouse) and the PostgreSQL and SQLite scanners (its catalog). `duckdb-extension-<name>` packages on
PyPI carry the extension binary built for one DuckDB release (extensions/<version>/<name>.duckdb_extension);
it is LOADed by path into one connection, so nothing is written to ~/.duckdb and no download is
tried. DuckDB is pinned (constraints.txt) to the release those packages exist for: an unpinned
DuckDB could not load them offline."""

from __future__ import annotations

import importlib
from pathlib import Path

from kit.core.errors import Sme2Error

# extension name -> the PyPI package that carries it
PACKAGES = {
    "ducklake": "duckdb-extension-ducklake",
    "postgres_scanner": "duckdb-extension-postgres-scanner",  # a lab's catalog in PostgreSQL
    "sqlite_scanner": "duckdb-extension-sqlite-scanner",  # one machine's catalog in a SQLite file
}


class ExtensionError(Sme2Error):
    pass


def extension_file(conn, name: str) -> Path:
    """The extension binary for this connection's DuckDB version, from its package."""
    if name not in PACKAGES:
        raise ExtensionError(f"unknown DuckDB extension {name!r}", f"use one of {', '.join(PACKAGES)}")
    version = conn.execute("PRAGMA version").fetchone()[0]
    try:
        module = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError as e:
        raise ExtensionError(
            f"the DuckDB extension {name} is not installed (package {PACKAGES[name]})",
            f"pip install -c constraints.txt {PACKAGES[name]} (or re-run scripts/setup.sh)",
        ) from e
    path = Path(list(module.__path__)[0]) / "extensions" / version / f"{name}.duckdb_extension"
    if not path.is_file():
        shipped = sorted(p.name for p in (path.parent.parent).glob("*")) if path.parent.parent.is_dir() else []
        raise ExtensionError(
            f"{PACKAGES[name]} has no {name} extension for DuckDB {version} (it has: {', '.join(shipped) or 'none'})",
            "install the DuckDB release constraints.txt pins (pip install -c constraints.txt -e .)",
        )
    return path


def load(conn, *names: str) -> None:
    """LOAD each extension into `conn` from its package's file."""
    for name in names:
        path = extension_file(conn, name)
        conn.execute(f"LOAD '{str(path).replace(chr(39), chr(39) * 2)}'")
