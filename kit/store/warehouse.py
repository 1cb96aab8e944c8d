"""The DuckDB warehouse: every number of every run, queryable across runs and nights.

One file under the data root, a versioned schema created and migrated by code, and one class,
`Warehouse`, through which the CLI and the Dagster assets alike read and write. A run's rows land
in one transaction; connections are short-lived; a file held by another process is waited for with
bounded back-off (readers too) and then reported clearly. Runs are never updated: a newer run of
the same key supersedes the older one through the `current_runs` view, and ingesting a run twice
is a no-op. A run's rows come from kit.store.runrows, go in through kit.store.runwriter; run
folders are ingested by kit.store.ingest."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import usersql
from kit.store.connection import connect, disk_full, is_disk_full, scalar
from kit.store.runrows import RunRows
from kit.store.runwriter import RunWriter
from kit.store.schema import TABLES, migrate
from kit.store.shared import SharedStore

BATCH_CHECKPOINT_MB = 256  # batch ingestion: a synced checkpoint after this much write-ahead log
# Writes are many small statements: worker threads only add wake-ups (milliseconds each on a
# loaded machine), so a writing connection runs single-threaded; reset before it closes, since
# the setting is the whole database instance's (readers of the same process share it).
WRITE_THREADS = 1


@dataclass
class Warehouse:
    path: Path
    # A lab's DuckLake ($SME2_SHARED_STORE, kit.store.shared): runs are published there after
    # they commit here, and readers see the union of this file and the lake.
    shared: SharedStore | None = None
    # Time travel: the lake as of this snapshot (a number, or a time) for every read; None = now.
    snapshot: int | str | None = None

    @classmethod
    def at(cls, root: DataRoot, snapshot: int | str | None = None) -> "Warehouse":
        shared = SharedStore.from_env()
        if snapshot is not None and shared is None:
            raise WarehouseError(
                f"--at {snapshot}: time travel reads the lab's DuckLake, and none is set up",
                "set $SME2_SHARED_STORE (and $SME2_SHARED_CATALOG) to the lab's lake (docs/deployment.md); a local "
                "warehouse keeps no snapshots",
            )
        return cls(root.warehouse, shared, snapshot)

    def lake_snapshot(self) -> int | None:
        """The lake snapshot reads see (the pinned one, else the newest); None without a lake."""
        if self.shared is None:
            return None
        if isinstance(self.snapshot, int) or (isinstance(self.snapshot, str) and self.snapshot.isdigit()):
            return int(self.snapshot)
        return self.shared.snapshot()

    @contextlib.contextmanager
    def write(self):
        try:
            with connect(self.path) as conn:
                migrate(conn)
                yield conn
        except (duckdb.Error, OSError) as e:
            if is_disk_full(e):  # say so, instead of DuckDB's follow-up errors and a traceback
                raise disk_full(self.path, e) from e
            raise

    @contextlib.contextmanager
    def read(self, local: bool = False):
        """A read-only connection. With a shared store (and not `local`), the table names are views
        over the union of this file and the store (kit.store.shared)."""
        if self.shared is not None and not local and not self.path.exists():
            self.ensure()  # an analysis host that measures nothing reads the store through an empty file
        with connect(self.path, read_only=True) as conn:
            if self.shared is not None and not local:
                self.shared.union_views(conn, self.snapshot)
            yield conn

    def ensure(self) -> None:
        with self.write():
            pass

    def sql(self, text: str, timeout_s: float = usersql.DEFAULT_TIMEOUT_S, max_rows: int | None = None) -> pd.DataFrame:
        """A user's ad-hoc SQL, through the one guard every entry point uses (kit.store.usersql):
        one SELECT, on a read-only, locked-down connection that cannot reach files or settings,
        within a time and a memory limit, at most max_rows + 1 rows."""
        return self.user_query(text, timeout_s, max_rows).result()

    def user_query(
        self, text: str, timeout_s: float = usersql.DEFAULT_TIMEOUT_S, max_rows: int | None = None
    ) -> usersql.UserQuery:
        """The same, started in its own thread: the caller waits for `result()` or `cancel()`s it."""
        if self.shared is not None and not self.path.exists():
            self.ensure()
        return usersql.UserQuery(
            self.path, text, timeout_s=timeout_s, max_rows=max_rows, shared=self.shared, at=self.snapshot
        )

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.read() as conn:
            try:
                return conn.execute(sql, params or []).df()
            except duckdb.Error as e:
                raise WarehouseError(
                    f"query failed: {str(e).splitlines()[0]}",
                    "check the SQL; tables: " + ", ".join(TABLES) + ", current_runs",
                ) from e

    def has_run(self, run_id: str) -> bool:
        if not self.path.exists():
            return False
        with self.read(local=True) as conn:
            try:
                return scalar(conn, "SELECT count(*) FROM runs WHERE run_id = ?", [run_id]) > 0
            except duckdb.CatalogException:
                return False

    def publish(self, run_ids: list[str] | None = None) -> list[str]:
        """Publish runs of this file to the shared store (default: every run the store lacks);
        returns the run ids published now. Without a store, nothing."""
        if self.shared is None or not self.path.exists():
            return []
        with self.read(local=True) as conn:
            try:
                local = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()]
            except duckdb.CatalogException:  # created but never migrated
                return []
            wanted = set(run_ids) if run_ids is not None else set(local) - self.shared.run_ids()
            return [run_id for run_id in local if run_id in wanted and self.shared.publish(conn, run_id)]

    def insert_run(self, rows: "RunRows") -> bool:
        """Insert one run's rows in one transaction; False if the run is already there. The path
        each Dagster run and `sme2 profile` take: one short-lived connection per run."""
        return bool(self.insert_runs([rows]))

    def insert_runs(self, runs: list["RunRows"]) -> list[str]:
        """Insert several runs' rows in ONE transaction: all of them or none. Runs already there
        are skipped (ingesting twice is a no-op); returns the run ids added."""
        with self.write() as conn:
            conn.execute(f"SET threads = {WRITE_THREADS}")
            writer = RunWriter(conn)
            conn.execute("BEGIN TRANSACTION")
            try:
                added = [rows.run["run_id"] for rows in runs if writer.write(rows)]
                conn.execute("COMMIT")
                return added
            except BaseException:
                writer.rollback()
                raise
            finally:
                with contextlib.suppress(duckdb.Error):
                    conn.execute("RESET threads")

    def insert_each(self, runs, on_run=None, checkpoint_mb: int = BATCH_CHECKPOINT_MB) -> list[str]:
        """Batch ingestion (`sme2 warehouse ingest`, `rebuild`): one connection for all runs, each
        run in its own transaction (atomic and visible to readers as soon as it commits; a killed
        process keeps every committed run). `runs` may be an iterator (read as written);
        `on_run(rows, added)` after each commit. Returns the run ids added.

        The log is checkpointed every `checkpoint_mb` and at the end, not at DuckDB's 16 MB default.
        Where DuckDB has the settings (2.x: `fsync_mode`, `enable_optimistic_write`; not the pinned
        1.5), durability is per batch: commits skip the fsync and only the checkpoints are synced, so
        an OS crash mid-batch can lose runs committed since the last one (re-running the same command
        adds them back: the run folders are the source of truth)."""
        added: list[str] = []
        wal = Path(str(self.path) + ".wal")
        with self.write() as conn:
            _set_if_known(conn, "fsync_mode", "'NONE'")
            conn.execute("SET checkpoint_threshold = '1TB'")  # no automatic checkpoint mid-batch
            _set_if_known(conn, "enable_optimistic_write", "false")  # big runs too go to the log
            conn.execute(f"SET threads = {WRITE_THREADS}")
            try:
                writer = RunWriter(conn, preload=True)
                for rows in runs:
                    conn.execute("BEGIN TRANSACTION")
                    try:
                        new = writer.write(rows)
                        conn.execute("COMMIT")
                    except BaseException:
                        writer.rollback()
                        raise
                    if new:
                        added.append(rows.run["run_id"])
                    if on_run is not None:
                        on_run(rows, new)
                    if wal.exists() and wal.stat().st_size > checkpoint_mb * 2**20:
                        _synced_checkpoint(conn)
                # The batch's durability: its final synced checkpoint must succeed, or the batch
                # failed (a full disk here leaves the runs in an unsynced log: said, never rc 0).
                _synced_checkpoint(conn)
            except duckdb.Error as e:
                if is_disk_full(e):
                    raise disk_full(self.path, e) from e
                raise
            finally:
                # Settings are the database instance's: a reader of this process keeps it alive, and
                # the next per-run write must sync again. (A broken connection reports its own error.)
                for setting in ("fsync_mode", "checkpoint_threshold", "enable_optimistic_write", "threads"):
                    with contextlib.suppress(duckdb.Error):  # (a setting this release lacks: nothing to reset)
                        conn.execute(f"RESET {setting}")
        return added

    def prune_events(self, older_than_days: int) -> int:
        """Retention: drop raw per-iteration op_events of runs started more than N days ago.
        Aggregates (op_stats, category_stats, latency samples, runs) are kept."""
        old = f"SELECT run_no FROM runs WHERE started_at < now() - INTERVAL {int(older_than_days)} DAY"
        with self.write() as conn:
            n = scalar(conn, f"SELECT count(*) FROM op_event_times WHERE run_no IN ({old})")
            conn.execute("BEGIN TRANSACTION")
            conn.execute(f"DELETE FROM op_event_times WHERE run_no IN ({old})")
            conn.execute(f"DELETE FROM op_event_slots WHERE run_no IN ({old})")
            conn.execute("COMMIT")
            return int(n)


def _set_if_known(conn, setting: str, value: str) -> bool:
    """SET a setting this DuckDB release has (False, nothing set, where it has not)."""
    known = conn.execute("SELECT count(*) FROM duckdb_settings() WHERE name = ?", [setting]).fetchone()[0]
    if known:
        conn.execute(f"SET {setting} = {value}")
    return bool(known)


def _synced_checkpoint(conn) -> None:
    """CHECKPOINT with fsync on (the database file is only ever written synced), then off again
    for the batch's commits (where the release can turn it off)."""
    if _set_if_known(conn, "fsync_mode", "'STANDARD'"):
        conn.execute("CHECKPOINT")
        conn.execute("SET fsync_mode = 'NONE'")
    else:
        conn.execute("CHECKPOINT")
