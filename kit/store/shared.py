"""The shared warehouse of a device lab: a DuckLake, written by many hosts, read by all.

DuckDB allows one writing process per database file, and a file lock over a network file system is
neither reliable nor wanted across hosts. So each host keeps its own `warehouse.duckdb` and, once a
run's rows have committed there, publishes them into the lab's DuckLake: its catalog in a SQL
database (the lab's PostgreSQL, `$SME2_SHARED_CATALOG=postgres:<libpq conninfo>`; on one machine
a SQLite file beside the data), its data as Parquet files under `$SME2_SHARED_STORE` (a folder every
host mounts). DuckLake is DuckDB's own lakehouse format: the engine, its transactions, snapshots and
maintenance are maintained and documented by others (ducklake.select), not by this project.

    <store>/data/v<schema version>/<table>/ducklake-<uuid>.parquet

Publishing a run is one DuckLake transaction over every table (latency_samples, op_events in their
wide form, op_stats, category_stats, kernels, artifacts, op_event_counts, runs): readers see the run
whole or not at all, a host killed mid-commit leaves nothing visible, and publishing again stores it.
Every row carries the `publish_id` of its transaction. A run already in the lake is not published
again; should two hosts publish the same run at the same moment (both checks pass before either
commits), both commits land, readers take one (the smallest publish id) and maintenance deletes the
other: a run is seen exactly once, and stored once after maintenance.

Readers (`sme2 sql`, the named queries, the reports, every `Warehouse.query`) see the union of the
local file and the lake through temp views named like the tables (`runs`, `op_events`, ...,
`current_runs`): the local rows plus the lake's runs the local file lacks. `at` pins the lake side to
one snapshot (time travel: `sme2 sql --at`, `sme2 report --at`). `regressions`, `op_event_times` and
`op_event_slots` stay local.

Maintenance (`sme2 warehouse compact`, and nightly in Dagster): duplicate publishes deleted,
`ducklake_merge_adjacent_files`, snapshots older than the retention expired, then the files no
snapshot needs and files no transaction committed (a killed writer's) deleted. A schema migration
starts a new schema in the lake (`v<version>`), and each host republishes its runs into it from its
own file (`sme2 warehouse publish`): the lake is derived from the hosts' files, which stay the source."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from kit.core import environment
from kit.core.errors import DiskFullError, Sme2Error, WarehouseError
from kit.store import extensions
from kit.store.connection import ENGINE_CONFIG, detach_others
from kit.store.schema import OP_COUNTS_VIEW, OP_INSTANCES_VIEW, SCHEMA_VERSION

SHARED_ENV = "SME2_SHARED_STORE"
CATALOG_ENV = "SME2_SHARED_CATALOG"
LAKE = "sme2_lake"
# Published per run, in this order, in one transaction.
PUBLISHED = (
    "latency_samples",
    "op_events",
    "op_stats",
    "category_stats",
    "kernels",
    "artifacts",
    "op_event_counts",
    "runs",
)
LOCAL_ONLY = ("run_no",)  # a local database's own numbering: meaningless in the lake
PUBLISH_ID = "publish_id"
# Rows are never inlined in the catalog: reading inlined rows back through PostgreSQL cost every
# query ~40 ms more than reading small Parquet files (bench/lab_store_bench.py); maintenance merges
# the small files.
INLINE_ROWS = 0
COMMIT_RETRY_S = 60.0  # concurrent commits (and a busy SQLite catalog) are retried this long
_PATH_CHARS = set("*?[]{}'\"\\\n\0")
# Lakes (catalog, schema) whose tables this process has seen complete: tables are never dropped, so
# publishing skips the catalog lookups after the first time.
_COMPLETE: set[tuple[str, str]] = set()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Compaction:
    """What one maintenance pass did."""

    duplicates_removed: int = 0
    files_before: int = 0
    files_after: int = 0
    snapshots_expired: int = 0
    files_deleted: int = 0
    runs: int = 0


@dataclass
class FileProblem:
    table: str
    path: str
    problem: str


@dataclass(frozen=True)
class SharedStore:
    path: Path  # the data folder every host mounts
    catalog: str = ""  # "postgres:<conninfo>" or "sqlite:<file>"; "" = sqlite:<path>/catalog.sqlite
    schema: str = field(default=f"v{SCHEMA_VERSION}")

    @classmethod
    def of(cls, path: str | os.PathLike, catalog: str | None = None) -> "SharedStore":
        p = Path(path).expanduser().resolve()
        if _PATH_CHARS & set(str(p)):
            raise WarehouseError(
                f"shared store path {p} contains glob, quote or control characters",
                f"mount the shared store at a plain path (letters, digits, / _ . -) and set ${SHARED_ENV} to it",
            )
        catalog = (catalog or "").strip() or f"sqlite:{p / 'catalog.sqlite'}"
        kind, _, target = catalog.partition(":")
        if kind not in ("postgres", "sqlite") or not target or "\0" in catalog or "\n" in catalog:
            raise WarehouseError(
                f"${CATALOG_ENV} {catalog!r} is not a DuckLake catalog this platform uses",
                "use postgres:<libpq connection string> (a lab), e.g. postgres:dbname=sme2_lake host=lab-db, or "
                "leave it unset for a SQLite catalog beside the data (one machine)",
            )
        return cls(p, catalog)

    @classmethod
    def from_env(cls, environ=None) -> "SharedStore | None":
        """The lake named by $SME2_SHARED_STORE (and $SME2_SHARED_CATALOG), or None (no lab)."""
        value = (environment.get(SHARED_ENV, environ) or "").strip()
        return cls.of(value, environment.get(CATALOG_ENV, environ)) if value else None

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def kind(self) -> str:
        return self.catalog.partition(":")[0]

    def describe(self) -> str:
        """Where the lake is, without the catalog's credentials."""
        where = "PostgreSQL catalog" if self.kind == "postgres" else f"SQLite catalog {self.catalog[7:]}"
        return f"{self.path} ({where})"

    # ------------------------------------------------------------------ connections

    def attach(self, conn, read_only: bool = False) -> None:
        """ATTACH the lake as `sme2_lake` on `conn` (once per connection)."""
        if conn.execute("SELECT count(*) FROM duckdb_databases() WHERE database_name = ?", [LAKE]).fetchone()[0]:
            return
        extensions.load(conn, "ducklake", "postgres_scanner" if self.kind == "postgres" else "sqlite_scanner")
        if self.kind == "postgres":  # no background thread holding the catalog's connections past close
            with contextlib.suppress(duckdb.Error):
                conn.execute("SET pg_pool_enable_reaper_thread = false")
        self.data.mkdir(parents=True, exist_ok=True) if not read_only else None
        options = [f"DATA_PATH {_literal(str(self.data) + '/')}"]
        if read_only:
            options.append("READ_ONLY")
        else:  # explicit: a read-only local warehouse connection would otherwise attach the lake read-only too
            options += ["READ_WRITE", f"DATA_INLINING_ROW_LIMIT {INLINE_ROWS}"]
        try:  # two hosts creating a new lake's catalog at once: one wins, the other retries and opens it
            _retrying(
                lambda: conn.execute(f"ATTACH {_literal('ducklake:' + self.catalog)} AS {LAKE} ({', '.join(options)})"),
                conn,
                also=("already exists", "duplicate key"),
            )
        except duckdb.Error as e:
            if _disk_full(e):
                raise self._disk_full_error("opening the lake", e) from e
            raise WarehouseError(
                f"cannot open the lab's DuckLake at {self.describe()}: {_first_line(e)}",
                f"check ${CATALOG_ENV} (the catalog database must be reachable from this host) and that ${SHARED_ENV} "
                "is mounted; runs stay in the local warehouse and `sme2 warehouse publish` adds them later",
            ) from e

    @contextlib.contextmanager
    def session(self, read_only: bool = True):
        """An in-memory DuckDB connection with the lake attached."""
        conn = duckdb.connect(config=ENGINE_CONFIG)
        try:
            self.attach(conn, read_only=read_only)
            yield conn
        finally:
            detach_others(conn)
            conn.close()

    def _tables(self, conn) -> set[str]:
        """The lake's tables in this schema: one catalog lookup."""
        rows = conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?", [LAKE, self.schema]
        ).fetchall()
        return {r[0] for r in rows}

    def _has_table(self, conn, table: str) -> bool:
        return table in self._tables(conn)

    def has_runs(self) -> bool:
        if not self._catalog_exists():
            return False
        with self.session() as conn:
            return self._has_table(conn, "runs")

    def _catalog_exists(self) -> bool:
        return self.kind == "postgres" or Path(self.catalog[len("sqlite:") :]).exists()

    # ------------------------------------------------------------------ writing

    def _ensure_tables(self, conn, local: str) -> None:
        """The lake's tables, shaped like the local ones (plus publish_id), created once."""
        if (self.catalog, self.schema) in _COMPLETE:
            return
        have = self._tables(conn)
        missing = [t for t in PUBLISHED if t not in have]
        if not missing:
            _COMPLETE.add((self.catalog, self.schema))
            return
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {LAKE}.{self.schema}")
        for table in missing:
            exclude = f" EXCLUDE ({', '.join(LOCAL_ONLY)})" if table == "runs" else ""
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {LAKE}.{self.schema}.{table} AS "
                f"SELECT *{exclude}, ''::VARCHAR AS {PUBLISH_ID} FROM {local}.{table} WHERE false"
            )

    def publish(self, conn, run_id: str) -> bool:
        """Publish one run from a local warehouse connection in one lake transaction; False if the
        lake has it already. Concurrent commits (another host publishing) are retried."""
        return bool(self.publish_many(conn, [run_id]))

    def publish_many(self, conn, run_ids: list[str]) -> list[str]:
        """Publish runs from a local warehouse connection in ONE lake transaction (all of them or
        none: a backlog, a migration); the ids the lake lacked, now published."""
        local = _local_schema(conn)
        known = {
            r[0]
            for r in conn.execute("SELECT run_id FROM runs WHERE run_id IN (SELECT unnest(?))", [run_ids]).fetchall()
        }
        if set(run_ids) - known:
            raise WarehouseError(
                f"run(s) {', '.join(sorted(set(run_ids) - known))} not in the local warehouse: nothing to publish",
                "ingest the run folder first (sme2 warehouse ingest DIR)",
            )
        self.attach(conn)
        _retrying(lambda: self._ensure_tables(conn, local), conn)
        publish_id = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(6)}"

        def once() -> list[str]:
            conn.execute("BEGIN TRANSACTION")
            try:
                # Constants, not a subquery: DuckLake skips the files whose run_id range excludes them.
                marks = ", ".join("?" for _ in run_ids)
                have = {
                    r[0]
                    for r in conn.execute(
                        f"SELECT run_id FROM {LAKE}.{self.schema}.runs WHERE run_id IN ({marks})", run_ids
                    ).fetchall()
                }
                new = [r for r in run_ids if r not in have]
                if not new:
                    conn.execute("ROLLBACK")
                    return []
                for table in PUBLISHED:
                    exclude = f" EXCLUDE ({', '.join(LOCAL_ONLY)})" if table == "runs" else ""
                    conn.execute(
                        f"INSERT INTO {LAKE}.{self.schema}.{table} BY NAME SELECT *{exclude}, ? AS {PUBLISH_ID} "
                        f"FROM {local}.{table} WHERE run_id IN (SELECT unnest(?))",
                        [publish_id, new],
                    )
                conn.execute("COMMIT")
                return new
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    conn.execute("ROLLBACK")
                raise

        try:
            try:
                return _retrying(once, conn)
            except duckdb.CatalogException:  # the lake was re-created under this process: look again
                _COMPLETE.discard((self.catalog, self.schema))
                _retrying(lambda: self._ensure_tables(conn, local), conn)
                return _retrying(once, conn)
        except duckdb.Error as e:
            raise self._write_error(", ".join(run_ids) if len(run_ids) <= 3 else f"{len(run_ids)} runs", e) from e

    def _write_error(self, run_id: str, e: Exception) -> WarehouseError | DiskFullError:
        text = _first_line(e)
        if _disk_full(e):
            return self._disk_full_error(f"publishing run {run_id}", e)
        return WarehouseError(
            f"publishing run {run_id} to the lab's DuckLake at {self.describe()} failed: {text}",
            "nothing of it is visible there (one transaction); the run stays in the local warehouse and "
            "`sme2 warehouse publish` adds it later",
        )

    def _disk_full_error(self, doing: str, e: Exception) -> DiskFullError:
        return DiskFullError(
            f"the lab's DuckLake is out of disk space {doing}: {_first_line(e)}",
            f"free space where ${SHARED_ENV} points ({self.path}: df -h {self.path}); runs stay in the "
            "local warehouse and `sme2 warehouse publish` adds them later",
        )

    # ------------------------------------------------------------------ reading

    def run_ids(self) -> set[str]:
        if not self.has_runs():
            return set()
        with self.session() as conn:
            return {r[0] for r in conn.execute(f"SELECT DISTINCT run_id FROM {LAKE}.{self.schema}.runs").fetchall()}

    def files(self, table: str) -> list[Path]:
        """The Parquet files of `table` in the current snapshot."""
        if table not in PUBLISHED:
            raise ValueError(f"{table} is not a published table")
        if not self.has_runs():
            return []
        with self.session() as conn:
            rows = conn.execute(
                f"SELECT data_file FROM ducklake_list_files({_literal(LAKE)}, ?, schema => ?)", [table, self.schema]
            ).fetchall()
        return sorted(Path(r[0]) for r in rows)

    def union_views(self, conn, at: int | str | None = None) -> bool:
        """Temp views on `conn` (a connection to a local warehouse) named like the tables, over the
        local rows plus the lake's runs the local file lacks (each once), optionally as of snapshot
        `at` (a version number, or a timestamp). False (no views) while the lake holds no run.
        Leaves `conn` in a read transaction (closing the connection ends it)."""
        if not self._catalog_exists():
            return False
        self.attach(conn, read_only=True)
        # One transaction for everything this connection then reads: DuckLake reads its catalog once
        # per transaction (~10-90 ms), and every query of the reader sees the same snapshot.
        conn.execute("BEGIN TRANSACTION")
        if not self._has_table(conn, "runs"):
            conn.execute("ROLLBACK")
            return False
        local = _local_schema(conn)
        when = _at_clause(at)

        def lake(table: str, alias: str = "") -> str:  # DuckDB: the alias goes before AT (...)
            return f"{LAKE}.{self.schema}.{table}{' ' + alias if alias else ''}{when}"

        conn.execute(
            f"""CREATE OR REPLACE TEMP VIEW _lake_winners AS
                SELECT run_id, min({PUBLISH_ID}) AS {PUBLISH_ID} FROM {lake("runs")}
                WHERE run_id NOT IN (SELECT run_id FROM {local}.runs) GROUP BY run_id"""
        )
        for table in PUBLISHED:
            conn.execute(
                f"""CREATE OR REPLACE TEMP VIEW {table} AS
                    SELECT * FROM {local}.{table} UNION ALL BY NAME
                    SELECT t.* EXCLUDE ({PUBLISH_ID}) FROM {lake(table, "t")} SEMI JOIN _lake_winners w
                    ON t.run_id = w.run_id AND t.{PUBLISH_ID} = w.{PUBLISH_ID}"""
            )
        conn.execute(
            """CREATE OR REPLACE TEMP VIEW current_runs AS SELECT * FROM runs
               QUALIFY row_number() OVER (PARTITION BY run_key ORDER BY started_at DESC, run_id DESC) = 1"""
        )
        conn.execute(f"CREATE OR REPLACE TEMP VIEW op_counts AS {OP_COUNTS_VIEW}")
        conn.execute(f"CREATE OR REPLACE TEMP VIEW op_instances AS {OP_INSTANCES_VIEW}")
        return True

    def sql_config(self) -> dict:
        """What a locked-down reader (kit.store.usersql) must allow: the lake's data folder and,
        for a SQLite catalog, its file."""
        allowed = [str(self.data) + "/"]
        if self.kind == "sqlite":
            allowed.append(self.catalog[len("sqlite:") :])
        return {"allowed_directories": allowed}

    def snapshot(self) -> int | None:
        """The lake's current snapshot id (what a report read), or None without a lake."""
        if not self.has_runs():
            return None
        with self.session() as conn:
            return conn.execute(f"SELECT max(snapshot_id) FROM ducklake_snapshots({_literal(LAKE)})").fetchone()[0]

    def history(self, limit: int = 50) -> list[dict]:
        """The newest snapshots: when, and which runs each one added."""
        if not self.has_runs():
            return []
        with self.session() as conn:
            snaps = conn.execute(
                f"SELECT snapshot_id, snapshot_time, changes FROM ducklake_snapshots({_literal(LAKE)}) "
                "ORDER BY snapshot_id DESC LIMIT ?",
                [limit],
            ).fetchall()
            if not snaps:
                return []
            oldest = max(snaps[-1][0], 0)
            added = conn.execute(
                f"SELECT snapshot_id, run_id FROM ducklake_table_changes({_literal(LAKE)}, ?, 'runs', ?, ?) "
                "WHERE change_type = 'insert' ORDER BY run_id",
                [self.schema, oldest, snaps[0][0]],
            ).fetchall()
        by_snapshot: dict[int, list[str]] = {}
        for snap, run_id in added:
            by_snapshot.setdefault(snap, []).append(run_id)
        return [
            {"snapshot": s, "time": str(t), "changes": str(c), "runs_added": by_snapshot.get(s, [])}
            for s, t, c in snaps
        ]

    # ------------------------------------------------------------------ maintenance

    def compact(self, keep_days: int = 30, say=None) -> Compaction:
        """The engine's maintenance: duplicate publishes deleted, adjacent files merged, snapshots
        older than `keep_days` expired (time travel reaches back that far), then the files no
        snapshot needs and files no transaction committed (older than a day: never a commit in
        flight) deleted."""
        done = Compaction()
        if not self.has_runs():
            return done
        say = say or (lambda m: None)
        with self.session(read_only=False) as conn:
            done.files_before = self._file_count(conn)
            dupes = conn.execute(
                f"SELECT count(*) FROM (SELECT run_id FROM {LAKE}.{self.schema}.runs GROUP BY run_id HAVING count(*) > 1)"
            ).fetchone()[0]
            if dupes:
                say(f"deleting {dupes} duplicate publish(es)")

                def delete() -> None:
                    conn.execute("BEGIN TRANSACTION")
                    winners = f"SELECT run_id, min({PUBLISH_ID}) AS p FROM {LAKE}.{self.schema}.runs GROUP BY run_id"
                    for table in PUBLISHED:
                        conn.execute(
                            f"DELETE FROM {LAKE}.{self.schema}.{table} t WHERE EXISTS (SELECT 1 FROM ({winners}) w "
                            f"WHERE w.run_id = t.run_id AND w.p <> t.{PUBLISH_ID})"
                        )
                    conn.execute("COMMIT")

                _retrying(delete, conn)
                done.duplicates_removed = dupes
            say("merging adjacent files")
            conn.execute(f"CALL ducklake_merge_adjacent_files({_literal(LAKE)})")
            say(f"expiring snapshots older than {keep_days} days")
            expired = conn.execute(
                f"CALL ducklake_expire_snapshots({_literal(LAKE)}, older_than => now() - INTERVAL {int(keep_days)} DAY)"
            ).fetchall()
            done.snapshots_expired = len(expired)
            say("deleting files no snapshot needs")
            old = conn.execute(f"CALL ducklake_cleanup_old_files({_literal(LAKE)}, cleanup_all => true)").fetchall()
            orphans = conn.execute(
                f"CALL ducklake_delete_orphaned_files({_literal(LAKE)}, older_than => now() - INTERVAL 1 DAY)"
            ).fetchall()
            done.files_deleted = len(old) + len(orphans)
            done.files_after = self._file_count(conn)
            done.runs = conn.execute(f"SELECT count(DISTINCT run_id) FROM {LAKE}.{self.schema}.runs").fetchone()[0]
        return done

    def _file_count(self, conn) -> int:
        have = self._tables(conn)
        return sum(
            conn.execute(
                f"SELECT count(*) FROM ducklake_list_files({_literal(LAKE)}, ?, schema => ?)", [t, self.schema]
            ).fetchone()[0]
            for t in PUBLISHED
            if t in have
        )

    def verify(self) -> list[FileProblem]:
        """Every data file the current snapshot needs that is missing or cannot be read."""
        problems: list[FileProblem] = []
        if not self.has_runs():
            return problems
        with self.session() as conn:
            have = self._tables(conn)
            for table in PUBLISHED:
                if table not in have:
                    continue
                rows = conn.execute(
                    f"SELECT data_file, data_file_size_bytes FROM ducklake_list_files({_literal(LAKE)}, ?, schema => ?)",
                    [table, self.schema],
                ).fetchall()
                for path, size in rows:
                    p = Path(path)
                    if not p.exists():
                        problems.append(FileProblem(table, path, "missing"))
                    elif size is not None and p.stat().st_size != size:
                        problems.append(FileProblem(table, path, f"{p.stat().st_size} bytes, the catalog says {size}"))
                    else:
                        try:
                            conn.execute(f"SELECT count(*) FROM parquet_metadata({_literal(path)})").fetchone()
                        except duckdb.Error as e:
                            problems.append(FileProblem(table, path, f"unreadable: {_first_line(e)}"))
        return problems


def _local_schema(conn) -> str:
    db = conn.execute("SELECT current_database()").fetchone()[0]
    return f'"{db}".main'


def _at_clause(at: int | str | None) -> str:
    if at is None:
        return ""
    if isinstance(at, int) or (isinstance(at, str) and at.isdigit()):
        return f" AT (VERSION => {int(at)})"
    try:
        stamp = (
            time.strptime(str(at)[:19], "%Y-%m-%dT%H:%M:%S") if "T" in str(at) else time.strptime(str(at), "%Y-%m-%d")
        )
    except ValueError as e:
        raise WarehouseError(
            f"{at!r} is neither a snapshot number nor a time",
            "give a snapshot (sme2 warehouse history) or a time such as 2026-12-01 or 2026-12-01T08:00:00",
        ) from e
    return f" AT (TIMESTAMP => TIMESTAMPTZ {_literal(time.strftime('%Y-%m-%d %H:%M:%S', stamp))})"


def _disk_full(e: Exception) -> bool:
    return any(m in str(e) for m in ("No space left", "disk is full", "database or disk is full"))


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


_CONCURRENT = ("Failed to commit DuckLake transaction", "database is locked", "Conflict", "conflict")


def _retryable(e: Exception, also: tuple[str, ...] = ()) -> bool:
    return isinstance(e, duckdb.Error) and any(marker in str(e) for marker in _CONCURRENT + also)


def _retrying(fn, conn, also: tuple[str, ...] = ()):
    """`fn()`, again while it fails on a concurrent commit (another host's) for COMMIT_RETRY_S;
    `also`: more error texts that mean "another host got there first"."""
    deadline = time.monotonic() + COMMIT_RETRY_S
    delay = 0.05
    while True:
        try:
            return fn()
        except Sme2Error:
            raise
        except duckdb.Error as e:
            with contextlib.suppress(duckdb.Error):
                conn.execute("ROLLBACK")
            if not _retryable(e, also) or time.monotonic() >= deadline:
                raise
            time.sleep(delay * (1 + secrets.randbelow(100) / 100))
            delay = min(delay * 2, 1.0)
