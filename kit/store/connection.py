"""Connections to the warehouse file: short-lived, waiting with bounded back-off while another
process holds the file, and turning lock, corruption and out-of-space failures into errors that
name the file and what to do."""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path
from typing import Iterator

import duckdb
import tenacity

from kit.core.errors import WarehouseError

LOCK_WAIT_S = 60.0
# Every connection: DuckDB extensions come only from installed, version-pinned packages, LOADed by
# path (kit.store.extensions), never from the network. Their signature check costs ~250 ms per
# extension per connection (it hashes a 40 MB file), so it is skipped: the files carry the same
# trust as DuckDB's own native library beside them. User SQL cannot LOAD anything either way
# (kit.store.usersql turns external access off before any user text runs).
ENGINE_CONFIG = {"allow_unsigned_extensions": True, "autoinstall_known_extensions": False}


def _is_lock_error(e: Exception) -> bool:
    text = str(e)
    return "Could not set lock" in text or "Conflicting lock" in text or "database is locked" in text


def is_disk_full(e: BaseException) -> bool:
    """An out-of-space (or quota) failure, from the OS or from DuckDB's message."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(e)
    return "No space left on device" in text or "Disk quota exceeded" in text


def disk_full(path: Path, e: BaseException) -> WarehouseError:
    return WarehouseError(
        f"disk full at {path}: {str(e).splitlines()[0]}",
        f"free space on that file system (df -h {Path(path).parent}) or point --home / $SME2_HOME at a"
        " bigger disk, then re-run; the failed write left no partial rows",
    )


@contextlib.contextmanager
def connect(
    path: Path, read_only: bool = False, wait_s: float = LOCK_WAIT_S, config: dict | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection; waits with bounded, jittered back-off (tenacity) while another process holds
    the file, then raises a WarehouseError naming the file.

    `config` (DuckDB settings applied before the first statement) is for locked-down readers such
    as kit.store.usersql: such a connection never falls back to another mode or shares the instance of a
    less restricted connection of this process; it waits for that one to close instead."""
    path = Path(path)
    if read_only and not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}",
            "profile something first (sme2 profile / sme2 pipeline), or pass the right --home",
        )
    try:
        conn = _open_waiting(path, read_only, wait_s, config)
    except _Busy as busy:
        raise busy.error from busy.__cause__
    try:
        yield conn
    finally:
        detach_others(conn)
        conn.close()


def detach_others(conn) -> None:
    """DETACH every database but the connection's own (a lab's DuckLake and its catalog) before the
    connection closes. Closing alone does not disassociate attached databases: a DuckLake's
    PostgreSQL catalog kept the file's database instance alive after close, and the next connect to
    the file in the process then waited forever for that instance to shut down."""
    with contextlib.suppress(duckdb.Error):
        conn.execute("ROLLBACK")  # a reader's open transaction (kit.store.shared.union_views)
    with contextlib.suppress(duckdb.Error):
        own = conn.execute("SELECT current_database()").fetchone()[0]
        others = conn.execute(
            "SELECT database_name FROM duckdb_databases() WHERE NOT internal AND database_name <> ? "
            "ORDER BY database_name LIKE '\\_\\_%' ESCAPE '\\'",  # the lake before its catalog
            [own],
        ).fetchall()
        for (name,) in others:
            with contextlib.suppress(duckdb.Error):
                conn.execute(f'DETACH DATABASE IF EXISTS "{name}"')


def scalar(conn, sql: str, params: list | None = None):
    """The first value of a query. Reads the whole result: DuckDB 2 refuses new work on a
    connection while a result is unfinished."""
    rows = conn.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def first_row(conn, sql: str, params: list | None = None):
    rows = conn.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


class _Busy(Exception):
    """The file is held (by another process, or by this one with other settings): try again."""

    def __init__(self, error: WarehouseError):
        super().__init__(error.message)
        self.error = error  # what to say when the wait is over


def _open_waiting(path: Path, read_only: bool, wait_s: float, config: dict | None) -> duckdb.DuckDBPyConnection:
    """Open the file, retrying with jittered exponential back-off (tenacity) while it is busy."""
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_Busy),
        stop=tenacity.stop_after_delay(wait_s),
        wait=tenacity.wait_random_exponential(multiplier=0.02, max=1.0),
        reraise=True,
    )
    return retrying(_open_once, path, read_only, wait_s, config)


def _open_once(path: Path, read_only: bool, wait_s: float, config: dict | None) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only, config={**ENGINE_CONFIG, **(config or {})})
    except duckdb.ConnectionException as e:
        if config:  # this process has the file open with other settings: wait, never widen
            raise _Busy(
                WarehouseError(
                    f"this process already has the warehouse {path} open with other settings"
                    f" (a read-write or ordinary connection) for more than {wait_s:.0f}s",
                    "user SQL opens the file only read-only and locked down: run it from its own"
                    " process (sme2 sql), or close the other connection first",
                )
            ) from e
        if read_only:  # this process already holds a read-write connection: reuse its mode
            return duckdb.connect(str(path), config=ENGINE_CONFIG)
        raise
    except (duckdb.IOException, duckdb.Error) as e:
        if is_disk_full(e):
            raise disk_full(path, e) from e
        if not _is_lock_error(e):
            raise WarehouseError(
                f"cannot open the warehouse {path}: {e}",
                "check the file; if it is corrupt, move it away and rebuild with `sme2 warehouse rebuild`",
            ) from e
        raise _Busy(
            WarehouseError(
                f"the warehouse {path} is held by another process for more than {wait_s:.0f}s",
                "wait for the other sme2/Dagster run to finish, or stop it",
            )
        ) from e
