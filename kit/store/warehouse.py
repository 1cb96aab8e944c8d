"""The DuckDB warehouse: every number of every run, queryable across runs and nights.

One file under the data root, a versioned schema created and migrated by code, and one module
through which the CLI and the Dagster assets alike write. A run's rows land in one transaction;
connections are short-lived; a file held by another process is waited for with bounded back-off
(readers too) and then reported clearly. Runs are never updated: a newer run of the same key
supersedes the older one through the `current_runs` view, and ingesting a run twice is a no-op."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kit.core.atomic import sha256_file
from kit.core.errors import RunFolderError, Sme2Error, WarehouseError
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.counts import table as count_table
from kit.profile import session
from kit.profile.runrecord import RUN_FILE, RunRecord, read_timing
from kit.stats import categories
from kit.store import usersql
from kit.store.connection import connect, disk_full, first_row, is_disk_full, scalar
from kit.store.schema import TABLES, migrate
from kit.store.shared import SharedStore
from kit.trace import kernels, modules
from kit.trace.program import ProgramMap

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
            writer = _RunWriter(conn)
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
                writer = _RunWriter(conn, preload=True)
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


@dataclass
class RunRows:
    run: dict
    samples: pd.DataFrame
    events: pd.DataFrame
    op_stats: pd.DataFrame
    category_stats: pd.DataFrame
    kernels: pd.DataFrame
    artifacts: pd.DataFrame
    counts: pd.DataFrame | None = None  # op_event_counts: a counted (emulated) run's count table

    def tables(self):
        yield "runs", pd.DataFrame([self.run])
        yield "latency_samples", self.samples
        yield "op_events", self.events
        yield "op_stats", self.op_stats
        yield "category_stats", self.category_stats
        yield "kernels", self.kernels
        yield "artifacts", self.artifacts
        yield "op_event_counts", self.counts if self.counts is not None else pd.DataFrame()

    def relocated(self, staged: Path, final: Path) -> "RunRows":
        """The same rows for a folder read while staged and committed later: paths name `final`."""
        staged, final = str(Path(staged)), str(Path(final))

        def moved(path):
            return final + path[len(staged) :] if isinstance(path, str) and path.startswith(staged) else path

        run = {**self.run, "run_dir": moved(self.run.get("run_dir"))}
        artifacts = self.artifacts.copy()
        if "path" in artifacts:
            artifacts["path"] = artifacts["path"].map(moved)
        return RunRows(
            run, self.samples, self.events, self.op_stats, self.category_stats, self.kernels, artifacts, self.counts
        )


# The columns that describe an event (one op_event_slots row per distinct combination in a run).
SLOT_COLUMNS = [
    "op_type", "event_name", "delegated", "backend", "instruction_id", "category", "fine_category", "kernel_hint",
    "module",
]  # fmt: skip


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


class _RunWriter:
    """Writes RunRows over one open connection, inside the caller's transaction. Tables go in as
    Arrow with dictionary-encoded strings (DuckDB scans those without a Python object per value);
    op events go in normalized (schema v2): each run's slots once, then narrow time rows. Every
    statement has a fixed cost that grows with the table's columns, not its rows, so a run is one
    statement per table and one lookup: a batch reads the stored run ids once, a single run asks
    for its own id and draws its run number in one query. Run numbers come from a sequence, so
    two connections of one process writing at once still never share one."""

    def __init__(self, conn, preload: bool = False):
        self.conn = conn
        # The connection holds the file's only write lock: nobody else adds runs meanwhile. A
        # batch reads the stored run ids once; a single run asks for its own id.
        self.stored = {r[0] for r in conn.execute("SELECT run_id FROM runs").fetchall()} if preload else None

    def rollback(self) -> None:
        # A failed COMMIT (e.g. a full disk) has already rolled back, and DuckDB answers the
        # ROLLBACK with "no transaction is active": that must not mask the real error.
        with contextlib.suppress(duckdb.Error):
            self.conn.execute("ROLLBACK")

    def write(self, rows: "RunRows") -> bool:
        """Append one run's rows; False (nothing written) if the run is already stored."""
        run_id = rows.run["run_id"]
        if self.stored is not None:  # a batch: the stored ids were read once
            if run_id in self.stored:
                return False
            run_no = scalar(self.conn, "SELECT nextval('run_no_seq')")
        else:
            present, run_no = first_row(
                self.conn, "SELECT (SELECT count(*) FROM runs WHERE run_id = ?), nextval('run_no_seq')", [run_id]
            )
            if present:
                return False  # (the number drawn stays unused: gaps are harmless)
        slots, times = event_tables(rows.events, run_no)
        for table, frame in (
            ("runs", _run_row({**rows.run, "run_no": run_no})),
            ("latency_samples", rows.samples),
            ("op_event_slots", slots),
            ("op_event_times", times),
            ("op_stats", rows.op_stats),
            ("category_stats", rows.category_stats),
            ("kernels", rows.kernels),
            ("artifacts", rows.artifacts),
            ("op_event_counts", rows.counts),
        ):
            if frame is not None and len(frame):
                self._insert(table, frame)
        if self.stored is not None:
            self.stored.add(run_id)  # not yet committed: a rollback ends the batch anyway
        return True

    def _insert(self, table: str, frame: pd.DataFrame | pa.Table) -> None:
        """One INSERT statement from Arrow. (Its fixed cost grows with the table's columns, not
        its rows: a 16-row op_stats costs about what 12,000 narrow event rows do; bound VALUES
        are no cheaper. That, times 8 tables, is the floor of a run's write.)"""
        arrow = frame if isinstance(frame, pa.Table) else _arrow(frame)
        cols = ", ".join(f'"{c}"' for c in arrow.column_names)
        self.conn.register("_frame", arrow)
        try:
            self.conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _frame")
        finally:
            # In an aborted transaction this fails too; the insert's own error is the one to raise.
            with contextlib.suppress(duckdb.Error):
                self.conn.unregister("_frame")


DICTIONARY_ROWS = 256  # string columns of tables with more rows than this are dictionary-encoded


def _arrow_column(values, encode: bool) -> pa.Array | pa.ChunkedArray:
    """One pandas column as Arrow without pandas' per-frame conversion machinery: pandas strings
    are Arrow already (zero copy), numbers are numpy; NaN becomes NULL, as DuckDB reads pandas."""
    col = pa.array(values.array if values.dtype == "str" else values, from_pandas=True)
    if encode and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col.dictionary_encode()  # a run repeats its run id and names on every row
    return col


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A DataFrame as Arrow; string columns dictionary-encoded where the table is long enough for
    repetition to pay (encoding a 20-row op_stats costs more than it saves)."""
    encode = len(frame) > DICTIONARY_ROWS
    try:
        return pa.table({name: _arrow_column(frame[name], encode) for name in frame.columns})
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # mixed object columns: pandas' way
        table = pa.Table.from_pandas(frame, preserve_index=False)
        return pa.table({n: _arrow_column(c.to_pandas(), encode) for n, c in zip(table.column_names, table.columns)})


def _run_row(run: dict) -> pa.Table:
    """The runs row straight from its dict (a one-row DataFrame costs ten times more), NaN as NULL."""

    def value(v):
        if isinstance(v, float) and v != v:
            return None
        return pd.Timestamp(v) if isinstance(v, np.datetime64) else v

    try:
        return pa.Table.from_pylist([{k: value(v) for k, v in run.items()}])
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # a value Arrow cannot infer: pandas' way
        return _arrow(pd.DataFrame([run]))


def event_tables(events: pd.DataFrame, run_no: int) -> tuple[pa.Table | None, pa.Table | None]:
    """A run's op events (the wide op_events columns) as its op_event_slots and op_event_times rows.
    A slot is a distinct event description. Every iteration of a program emits the same events in
    the same order, so the description at a position (seq) is normally the same in all iterations:
    that is checked column by column in Arrow and then seq is the slot. When it does not hold,
    each distinct description gets its own slot (slower, same rows)."""
    if events is None or len(events) == 0:
        return None, None
    # Rows from before modules were attributed (and crafted rows) have no module: "".
    described = pa.table(
        {
            c: _arrow_column(events[c] if c in events else pd.Series([""] * len(events)), encode=False)
            for c in SLOT_COLUMNS
        }
    )
    _, first, slot = np.unique(events["seq"].to_numpy(), return_index=True, return_inverse=True)
    same_at_seq = first[slot]
    if not all(
        col.null_count == 0 and pc.all(pc.equal(col, col.take(same_at_seq))).as_py() for col in described.columns
    ):
        key = np.zeros(len(events), np.int64)
        for col in SLOT_COLUMNS:
            codes, uniques = pd.factorize(described[col].to_pandas(), use_na_sentinel=False)
            key, _ = pd.factorize(key * (len(uniques) + 1) + codes)  # stays < len(events): no overflow
        slot, distinct = pd.factorize(key)
        first = np.zeros(len(distinct), np.int64)
        first[slot[::-1]] = np.arange(len(slot) - 1, -1, -1)  # first event of each slot
    slots = described.take(first)
    slots = pa.table(
        {
            "run_no": pa.array(np.full(len(first), run_no, np.int32)),
            "slot": pa.array(np.arange(len(first), dtype=np.int32)),
            **{name: col for name, col in zip(slots.column_names, slots.columns)},
        }
    )
    times = pa.table(
        {
            "run_no": pa.array(np.full(len(events), run_no, np.int32)),
            "iteration": pa.array(events["iteration"].to_numpy(np.int32)),
            "seq": pa.array(events["seq"].to_numpy(np.int32)),
            "slot": pa.array(np.asarray(slot, np.int32)),
            # NaN is NULL, as DuckDB reads pandas (a NaN duration is refused by NOT NULL)
            "start_us": pa.array(events["start_us"].to_numpy(np.float64), from_pandas=True),
            "duration_ms": pa.array(events["duration_ms"].to_numpy(np.float64), from_pandas=True),
        }
    )
    return slots, times


def rows_from_run(run_dir: Path, rules=None) -> RunRows:
    """Everything the warehouse keeps about a run folder, from its files alone."""

    result = session.load_run(run_dir, rules or categories.load_rules())
    rec, a = result.record, result.analysis
    run_id = rec.run_id
    tr_rows = result.trace.rows if hasattr(result, "trace") and result.trace is not None else None
    timing = read_timing(run_dir)  # validated like run.json: a crafted file raises, never half-ingests
    etdump_json = (
        read_json(Path(run_dir) / "etdump.json", f"the run in {run_dir}")
        if (Path(run_dir) / "etdump.json").exists()
        else {}
    )
    if not isinstance(etdump_json, dict):
        raise RunFolderError(f"{Path(run_dir) / 'etdump.json'} is not a JSON object", "re-run the profile")
    samples = pd.concat(
        [
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "kind": "timing",
                    "iteration": range(len(timing["latencies_ms"])),
                    "latency_ms": timing["latencies_ms"],
                }
            ),
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "kind": "execute",
                    "iteration": range(len(a.per_iteration)),
                    "latency_ms": a.per_iteration["execute_ms"].to_numpy(),
                }
            ),
        ],
        ignore_index=True,
    )
    pmap = ProgramMap.load(run_dir) if (Path(run_dir) / "program_map.json").is_file() else None
    if tr_rows is not None:
        operators = tr_rows.assign(module=modules.event_modules(tr_rows, pmap))
        operators = operators[operators.row_kind == "operator"]
        events = categories.label(operators, rules or categories.load_rules())
    else:
        events = pd.DataFrame()
    events = events.assign(run_id=run_id)[
        [
            "run_id",
            "iteration",
            "seq",
            "op_type",
            "event_name",
            "delegated",
            "backend",
            "instruction_id",
            "category",
            "fine_category",
            "kernel_hint",
            "start_us",
            "duration_ms",
            "module",
        ]
    ]
    op_stats = a.op_stats.assign(run_id=run_id)
    cat = a.category_stats.assign(run_id=run_id)
    # A kernel-log runner's stderr (kept in the run's logs) names the microkernel of each operator.
    logs = [
        (Path(run_dir) / n).read_text(errors="replace")
        for n in ("timing.log", "etdump.log")
        if (Path(run_dir) / n).is_file()
    ]
    kern = kernels.kernel_table(a.op_stats, kernels.kernel_log_of(logs) or None).assign(run_id=run_id)
    arts = []
    for kind, name in (
        ("etdump", "etdump.etdp"),
        ("timing", "timing.json"),
        ("robust_stats", f"{rec.stem}_robust_stats.json"),
        ("ops_stats", f"{rec.stem}_exec_ops_stats.csv"),
    ):
        p = Path(run_dir) / name
        if p.exists():
            arts.append(
                {"run_id": run_id, "kind": kind, "path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
            )
    e2e = a.e2e
    run = {
        "run_id": run_id,
        "run_key": rec.run_key,
        "variant": rec.variant,
        "model": rec.model,
        "dtype": rec.dtype,
        "backend": rec.backend,
        "size": rec.size,
        "target": rec.target,
        "device": rec.device,
        "sme2": rec.sme2,
        "emulated": rec.emulated,
        "threads": rec.threads,
        "runner": rec.runner,
        "iterations": rec.iterations,
        "warmup": rec.warmup,
        "platform": rec.platform,
        "transport": rec.transport,
        "runner_sha256": rec.runner_sha256,
        "runner_recipe": rec.runner_recipe,
        "pte_sha256": rec.pte_sha256,
        "started_at": _utc(rec.started_at, run_dir),
        "finished_at": _utc(rec.finished_at, run_dir) if rec.finished_at else None,
        "ingested_at": _utc(None),
        "torch_version": rec.versions.get("torch"),
        "executorch_version": rec.versions.get("executorch"),
        "cpu_model": rec.conditions.get("cpu_model"),
        "e2e_median_ms": e2e.get("median_ms"),
        "e2e_p10_ms": e2e.get("percentiles", {}).get("p10"),
        "e2e_p90_ms": e2e.get("percentiles", {}).get("p90"),
        "e2e_cv_percent": e2e.get("cv_percent"),
        "e2e_ci_low_ms": e2e.get("median_ci95_ms", [None, None])[0],
        "e2e_ci_high_ms": e2e.get("median_ci95_ms", [None, None])[1],
        "execute_median_ms": a.execute.get("median_ms"),
        "coverage": a.coverage,
        "load_ms": rec.results.get("load_ms"),
        "first_inference_ms": rec.results.get("first_inference_ms"),
        "peak_rss_kb": rec.results.get("peak_rss_kb"),
        "n_samples": len(samples),
        "n_op_events": len(events),
        "n_op_stats": len(op_stats),
        "source": rec.source,
        "run_dir": str(run_dir),
        "conditions": json.dumps(rec.conditions, default=str),
        "results": json.dumps(
            {**rec.results, "etdump_run": {k: etdump_json.get(k) for k in ("load_ms", "first_inference_ms")}},
            default=str,
        ),
    }
    counted = count_table.read(run_dir)
    if counted is not None:
        counted = counted.assign(run_id=run_id, cost_model=(rec.results.get("counts") or {}).get("cost_model"))
    return RunRows(run, samples, events, op_stats, cat, kern, pd.DataFrame(arts), counted)


def _utc(text: str | None, run_dir: Path | None = None) -> pd.Timestamp:
    """A naive UTC timestamp (DuckDB TIMESTAMP) from an ISO string; now when None."""
    try:
        ts = pd.Timestamp(text) if text else pd.Timestamp.now(tz="UTC")
    except (ValueError, TypeError, OverflowError) as e:
        raise RunFolderError(
            f"{Path(run_dir or '.') / 'run.json'}: timestamp {text!r} is not a date ({e})",
            "use an ISO 8601 time such as 2026-01-31T12:00:00Z",
        ) from e
    if ts is pd.NaT:
        raise RunFolderError(f"{Path(run_dir or '.') / 'run.json'}: timestamp {text!r} is not a date", "use ISO 8601")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


def ingest_run(root: DataRoot, run_dir: Path, rules=None) -> bool:
    """Put a run folder into the warehouse (no-op if already there), then, in a lab, publish it to
    the shared store (no-op if already there): the local commit comes first, so a host that dies
    in between publishes the run at its next start (recovery) or with `sme2 warehouse publish`."""

    wh = Warehouse.at(root)
    run_id = RunRecord.load(run_dir).run_id
    added = False
    if not wh.has_run(run_id):
        added = wh.insert_run(rows_from_run(run_dir, rules or categories.load_rules(root.user_categories)))
    wh.publish([run_id])
    return added


# ---------------------------------------------------------------- folders the warehouse lacks


def run_folders(root: DataRoot) -> list[Path]:
    """Committed run folders under runs/ (staging and `.old` folders start with a dot)."""

    return sorted(p for p in root.runs.iterdir() if not p.name.startswith(".") and (p / RUN_FILE).is_file())


def stored_run_names(root: DataRoot) -> set[str]:
    """Run ids in the warehouse, and the folder names they were read from."""
    if not root.warehouse.exists():
        return set()
    with Warehouse.at(root).read(local=True) as conn:
        try:
            rows = conn.execute("SELECT run_id, run_dir FROM runs").fetchall()
        except duckdb.CatalogException:  # created but never migrated
            return set()
    return {run_id for run_id, _ in rows} | {Path(run_dir).name for _, run_dir in rows if run_dir}


def missing_runs(root: DataRoot) -> list[Path]:
    """Run folders with no rows in the warehouse."""
    stored = stored_run_names(root)
    return [d for d in run_folders(root) if d.name not in stored]


@dataclass
class Reconciled:
    recovered: list[str]  # run ids ingested now
    failed: dict[str, str]  # run folder -> why it could not be ingested


def reconcile(root: DataRoot, progress=None) -> Reconciled:
    """Ingest the run folders the warehouse lacks. A process killed after a run folder's rename and
    before its warehouse insert leaves exactly that; the files are the source of truth, so the next
    start completes the insert. Only the missing folders are read (this runs at every start), with
    rebuild's rules: a folder that cannot be ingested is reported with the reason, never raised (one
    bad folder must not stop profiling); a busy, broken or full warehouse is raised."""
    missing = missing_runs(root)
    if not missing:
        return Reconciled([], {})
    say = progress or (lambda msg: None)
    say(f"{len(missing)} run folder(s) are not in the warehouse (an earlier run was interrupted): ingesting")
    done = rebuild(root, say, folders=missing)
    failed = dict(done.bad)
    for name in done.present:  # its run.json names a run id the warehouse has, read from another folder
        failed[str(root.run_path(name))] = "its run id is already in the warehouse from another folder (a copy?)"
    return Reconciled(done.added, failed)


# ---------------------------------------------------------------- rebuild from the run folders


@dataclass
class Rebuilt:
    added: list[str]  # run ids ingested now
    present: list[str]  # run folders whose run was already in the warehouse
    bad: dict[str, str]  # run folder -> why it was skipped


def rebuild_candidates(root: DataRoot) -> list[Path]:
    """Every folder under runs/ that should be a run (staging and `.old` folders start with a dot)."""
    if not root.runs.is_dir():
        return []
    return sorted(p for p in root.runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def rebuild(root: DataRoot, progress=None, advance=None, folders: list[Path] | None = None) -> Rebuilt:
    """`sme2 warehouse rebuild`: ingest every run folder the warehouse lacks (the files are the
    source of truth). `folders`: only these (default: every candidate)."""
    return ingest_folders(root, rebuild_candidates(root) if folders is None else folders, progress, advance)


def expand_run_folders(paths: list[Path]) -> list[Path]:
    """`sme2 warehouse ingest DIR...`: each DIR is a run folder, or a folder of run folders (such
    as a data root's runs/; staging and `.old` folders, which start with a dot, are left out)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / RUN_FILE).is_file() or not p.is_dir():
            out.append(p)
        else:
            out.extend(sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")))
    return out


def ingest_folders(root: DataRoot, folders: list[Path], progress=None, advance=None) -> Rebuilt:
    """Batch ingestion of run folders: one connection, one transaction per run (insert_each), each
    folder read while the previous run is written. One bad folder (corrupt run.json, truncated
    ETDump, ...) must not stop the others: it is skipped and reported with the reason. A busy,
    broken or full warehouse is raised, since every folder would fail the same way."""
    say, step = progress or (lambda msg: None), advance or (lambda: None)
    wh = Warehouse.at(root)
    wh.ensure()
    rules = categories.load_rules(root.user_categories)
    stored = stored_run_names(root)
    out = Rebuilt([], [], {})
    folder_of: dict[str, str] = {}

    def readable():
        for folder in folders:
            folder = Path(folder)
            say(folder.name)
            try:
                if not (folder / RUN_FILE).is_file():
                    out.bad[str(folder)] = f"no {RUN_FILE}: not a run folder, or its run never finished"
                elif (run_id := RunRecord.load(folder).run_id) in stored:
                    out.present.append(folder.name)
                else:
                    rows = rows_from_run(folder, rules)
                    folder_of[run_id] = folder.name
                    yield rows
                    continue  # stepped once written
            except WarehouseError:
                raise
            except Sme2Error as e:
                out.bad[str(folder)] = e.message
            except Exception as e:  # a folder no validator anticipated: report it, keep going
                out.bad[str(folder)] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            step()

    def written(rows: RunRows, added: bool) -> None:
        name = folder_of[rows.run["run_id"]]
        (out.added if added else out.present).append(name)
        step()

    wh.insert_each(readable(), on_run=written)
    wh.publish()  # a lab: what this file has and the shared store lacks (nothing without a store)
    return out
