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
import pandas as pd

from kit.core.atomic import sha256_file
from kit.core.errors import RunFolderError, Sme2Error, WarehouseError
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.profile import session
from kit.profile.runrecord import RUN_FILE, RunRecord, read_timing
from kit.stats import categories
from kit.store import usersql
from kit.store.connection import connect, disk_full, is_disk_full, scalar
from kit.store.schema import TABLES, migrate
from kit.trace import kernels


@dataclass
class Warehouse:
    path: Path

    @classmethod
    def at(cls, root: DataRoot) -> "Warehouse":
        return cls(root.warehouse)

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
    def read(self):
        with connect(self.path, read_only=True) as conn:
            yield conn

    def ensure(self) -> None:
        with self.write():
            pass

    def sql(self, text: str) -> pd.DataFrame:
        """A user's ad-hoc SQL, through the one guard every entry point uses (kit.usersql):
        one SELECT, on a read-only, locked-down connection that cannot reach files or settings."""

        return usersql.run_user_sql(self.path, text)

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
        with self.read() as conn:
            try:
                return scalar(conn, "SELECT count(*) FROM runs WHERE run_id = ?", [run_id]) > 0
            except duckdb.CatalogException:
                return False

    def insert_run(self, rows: "RunRows") -> bool:
        """Insert one run's rows in one transaction; False if the run is already there."""
        return bool(self.insert_runs([rows]))

    def insert_runs(self, runs: list["RunRows"]) -> list[str]:
        """Insert several runs' rows in ONE transaction: all of them or none. Runs already there
        are skipped (ingesting twice is a no-op); returns the run ids added."""
        with self.write() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                added: list[str] = []
                for rows in runs:
                    run_id = rows.run["run_id"]
                    if run_id in added or scalar(conn, "SELECT count(*) FROM runs WHERE run_id = ?", [run_id]):
                        continue
                    for table, frame in rows.tables():
                        if frame is None or frame.empty:
                            continue
                        cols = ", ".join(f'"{c}"' for c in frame.columns)
                        conn.register("_frame", frame)
                        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _frame")
                        conn.unregister("_frame")
                    added.append(run_id)
                conn.execute("COMMIT")
                return added
            except BaseException:
                # A failed COMMIT (e.g. a full disk) has already rolled back, and DuckDB answers the
                # ROLLBACK with "no transaction is active": that must not mask the real error.
                with contextlib.suppress(duckdb.Error):
                    conn.execute("ROLLBACK")
                raise

    def prune_events(self, older_than_days: int) -> int:
        """Retention: drop raw per-iteration op_events of runs started more than N days ago.
        Aggregates (op_stats, category_stats, latency samples, runs) are kept."""
        with self.write() as conn:
            n = conn.execute(
                f"SELECT count(*) FROM op_events WHERE run_id IN (SELECT run_id FROM runs WHERE started_at < now() - INTERVAL {int(older_than_days)} DAY)"
            ).fetchone()[0]
            conn.execute(
                f"DELETE FROM op_events WHERE run_id IN (SELECT run_id FROM runs WHERE started_at < now() - INTERVAL {int(older_than_days)} DAY)"
            )
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

    def tables(self):
        yield "runs", pd.DataFrame([self.run])
        yield "latency_samples", self.samples
        yield "op_events", self.events
        yield "op_stats", self.op_stats
        yield "category_stats", self.category_stats
        yield "kernels", self.kernels
        yield "artifacts", self.artifacts

    def relocated(self, staged: Path, final: Path) -> "RunRows":
        """The same rows for a folder read while staged and committed later: paths name `final`."""
        staged, final = str(Path(staged)), str(Path(final))

        def moved(path):
            return final + path[len(staged) :] if isinstance(path, str) and path.startswith(staged) else path

        run = {**self.run, "run_dir": moved(self.run.get("run_dir"))}
        artifacts = self.artifacts.copy()
        if "path" in artifacts:
            artifacts["path"] = artifacts["path"].map(moved)
        return RunRows(run, self.samples, self.events, self.op_stats, self.category_stats, self.kernels, artifacts)


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
    events = (
        categories.label(tr_rows[tr_rows.row_kind == "operator"], rules or categories.load_rules())
        if tr_rows is not None
        else pd.DataFrame()
    )
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
    return RunRows(run, samples, events, op_stats, cat, kern, pd.DataFrame(arts))


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
    """Put a run folder into the warehouse (no-op if already there)."""

    wh = Warehouse.at(root)
    if wh.has_run(RunRecord.load(run_dir).run_id):
        return False
    return wh.insert_run(rows_from_run(run_dir, rules or categories.load_rules(root.user_categories)))


# ---------------------------------------------------------------- folders the warehouse lacks


def run_folders(root: DataRoot) -> list[Path]:
    """Committed run folders under runs/ (staging and `.old` folders start with a dot)."""

    return sorted(p for p in root.runs.iterdir() if not p.name.startswith(".") and (p / RUN_FILE).is_file())


def stored_run_names(root: DataRoot) -> set[str]:
    """Run ids in the warehouse, and the folder names they were read from."""
    if not root.warehouse.exists():
        return set()
    with Warehouse.at(root).read() as conn:
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
        failed[str(root.runs / name)] = "its run id is already in the warehouse from another folder (a copy?)"
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
    source of truth). One bad folder (corrupt run.json, truncated ETDump, ...) must not stop the
    others: it is skipped and reported with the reason. A busy, broken or full warehouse is raised,
    since every folder would fail the same way. `folders`: only these (default: every candidate)."""

    say, step = progress or (lambda msg: None), advance or (lambda: None)
    Warehouse.at(root).ensure()
    rules = categories.load_rules(root.user_categories)
    out = Rebuilt([], [], {})
    for folder in rebuild_candidates(root) if folders is None else folders:
        say(folder.name)
        try:
            if not (folder / RUN_FILE).is_file():
                out.bad[str(folder)] = f"no {RUN_FILE}: not a run folder, or its run never finished"
            elif ingest_run(root, folder, rules):
                out.added.append(folder.name)
            else:
                out.present.append(folder.name)
        except WarehouseError:
            raise
        except Sme2Error as e:
            out.bad[str(folder)] = e.message
        except Exception as e:  # a folder no validator anticipated: report it, keep going
            out.bad[str(folder)] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        step()
    return out
