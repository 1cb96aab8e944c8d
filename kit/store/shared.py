"""The shared store: the warehouse of a device lab, written by many hosts without a shared lock.

DuckDB allows one writing process per database file, and a file lock over a network file system
is neither reliable nor wanted across hosts. So each host keeps its own `warehouse.duckdb` and,
once a run's rows have committed there, publishes them once as immutable Parquet files into a
shared folder (`$SME2_SHARED_STORE`, e.g. an NFS mount every lab host and the analysis host see):

    <store>/v<schema version>/<table>/date=<YYYY-MM-DD>/device=<device>/<run_id>.parquet

one file per table per run (latency_samples, op_events in their wide form, op_stats,
category_stats, kernels, artifacts, runs). Every file is written to a temp name in its folder and
renamed (kit.core.atomic), and the `runs` file goes last: it is the run's commit marker. A reader
sees a run only when its `runs` file exists, so a host that dies mid-publish leaves files that no
view shows, and publishing the run again (`sme2 warehouse publish`, or the next start's recovery)
rewrites them under the same names: a run is in the store once, however often it is published.
Two hosts never write the same file unless they publish the same run, and then the content is
the same run's.

Readers (`sme2 sql`, the named queries, the reports, every `Warehouse.query`) see the union of
the local file and the store: temp views named like the tables (`runs`, `op_events`, ...,
`current_runs`) over the local tables plus the store's runs that the local file lacks. Nothing else
changes for them. `regressions`, `op_event_times` and `op_event_slots` stay local.

One file per run per table makes queries slow as the store grows (DuckDB opens every file: about
1 s per query at a thousand runs here), so `sme2 warehouse compact` merges each device's files of a
month (`--by day`: of a day) into one `batch-<UTC stamp>.parquet` per table, in a
`date=<YYYY-MM>` folder, the runs batch last, then deletes the files it merged. Readers take each run's rows from the newest batch whose runs file lists it, else from
its own files, so a crash anywhere in a compaction (or two of them at once) shows every run once.
A run's files that have no runs file yet (a publish in progress) are left alone.

Every file of a store version has the same columns (the warehouse schema of that version), so the
views read the files without reconciling schemas by name (DuckDB then reads one file's footer at
bind time, not every file's: 12 ms instead of 330 ms for 600 files here). A schema migration
starts a new version folder, and each host republishes its runs into it from its own file (`sme2
warehouse publish`): the store is derived from the hosts' files, which stay the source."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kit.core import atomic, names
from kit.core.errors import DiskFullError, Sme2Error, WarehouseError
from kit.core.locks import file_lock
from kit.store.schema import OP_COUNTS_VIEW, OP_INSTANCES_VIEW, SCHEMA_VERSION

SHARED_ENV = "SME2_SHARED_STORE"
# Published per run; `runs` LAST: a run exists in the store once its runs file does.
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
LOCAL_ONLY = ("run_no",)  # a local database's own numbering: meaningless in the store
_GLOB_CHARS = set("*?[]{}'\"\\")
COMPACT_BY = ("month", "day")
BATCH_PREFIX = "batch-"  # a compacted file: many runs' rows of one table, day and device


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class Compaction:
    partitions: int = 0
    runs: int = 0
    files_written: int = 0
    files_removed: int = 0


@dataclass(frozen=True)
class SharedStore:
    path: Path

    @classmethod
    def of(cls, path: str | os.PathLike) -> "SharedStore":
        p = Path(path).expanduser().resolve()
        if _GLOB_CHARS & set(str(p)):
            raise WarehouseError(
                f"shared store path {p} contains glob or quote characters",
                f"mount the shared store at a plain path (letters, digits, / _ . -) and set ${SHARED_ENV} to it",
            )
        return cls(p)

    @classmethod
    def from_env(cls, environ=None) -> "SharedStore | None":
        """The store named by $SME2_SHARED_STORE, or None (a single host: no store)."""
        value = (environ if environ is not None else os.environ).get(SHARED_ENV, "").strip()
        return cls.of(value) if value else None

    # ------------------------------------------------------------------ layout

    @property
    def data(self) -> Path:
        """This schema version's folder of the store."""
        return self.path / f"v{SCHEMA_VERSION}"

    def file(self, table: str, day: str, device: str, run_id: str) -> Path:
        if table not in PUBLISHED:
            raise ValueError(f"{table} is not a published table")
        names.device_name(device)
        names.file_component("run id", run_id)
        return self.data / table / f"date={day}" / f"device={device}" / f"{run_id}.parquet"

    def glob(self, table: str) -> str:
        return str(self.data / table / "date=*" / "device=*" / "*.parquet")

    def files(self, table: str) -> list[Path]:
        folder = self.data / table
        return sorted(folder.glob("date=*/device=*/*.parquet")) if folder.is_dir() else []

    def batch_glob(self, table: str) -> str:
        return str(self.data / table / "date=*" / "device=*" / f"{BATCH_PREFIX}*.parquet")

    def has_batches(self) -> bool:
        folder = self.data / "runs"
        return folder.is_dir() and next(folder.glob(f"date=*/device=*/{BATCH_PREFIX}*.parquet"), None) is not None

    def has_files(self, table: str) -> bool:
        folder = self.data / table
        return folder.is_dir() and next(folder.glob("date=*/device=*/*.parquet"), None) is not None

    def run_ids(self) -> set[str]:
        """Runs in the store (those whose commit marker, a runs file, lists them)."""
        return set(self._committed(self.files("runs")))

    def _committed(self, runs_files: list[Path]) -> dict[str, str]:
        """{run_id: the file stem its rows are read from}: the newest batch listing the run, else the
        run's own files (the reader rule of union_views, in Python)."""
        source: dict[str, str] = {}
        for f in runs_files:
            if not f.stem.startswith(BATCH_PREFIX):
                source.setdefault(f.stem, f.stem)
        for f in sorted((f for f in runs_files if f.stem.startswith(BATCH_PREFIX)), key=lambda f: f.stem):
            for run_id in pq.read_table(f, columns=["run_id"]).column("run_id").to_pylist():
                source[run_id] = f.stem  # sorted: a newer batch wins
        return source

    def _in_store(self, day: str, device: str, run_id: str) -> bool:
        marker = self.file("runs", day, device, run_id)
        if marker.exists():
            return True
        batches = [self.data / "runs" / f"date={period}" / f"device={device}" for period in (day, day[:7])]
        return run_id in self._committed(sorted(f for b in batches for f in b.glob(f"{BATCH_PREFIX}*.parquet")))

    # ------------------------------------------------------------------ writing

    def publish(self, conn, run_id: str) -> bool:
        """Publish one run from a local warehouse connection; False if it is in the store already.
        Each table's rows go to one Parquet file (temp name, fsync, rename); the runs file last."""
        row = conn.execute("SELECT device, CAST(started_at AS DATE) FROM runs WHERE run_id = ?", [run_id]).fetchall()
        if not row:
            raise WarehouseError(
                f"run {run_id} is not in the local warehouse: nothing to publish",
                "ingest its run folder first (sme2 warehouse ingest DIR)",
            )
        device, day = row[0]
        day = day.isoformat()
        if run_id.startswith(BATCH_PREFIX):
            raise WarehouseError(
                f"run id {run_id} starts with {BATCH_PREFIX!r}, the store's name for compacted files",
                "rename the run folder (and the run_id in its run.json) before publishing it",
            )
        if self._in_store(day, device, run_id):
            return False
        for table in PUBLISHED:
            exclude = f" EXCLUDE ({', '.join(LOCAL_ONLY)})" if table == "runs" else ""
            arrow = conn.execute(f"SELECT *{exclude} FROM {table} WHERE run_id = ?", [run_id]).to_arrow_table()
            if table != "runs" and arrow.num_rows == 0:
                continue
            buf = io.BytesIO()
            pq.write_table(arrow, buf, compression="zstd")
            target = self.file(table, day, device, run_id)
            try:
                try:
                    atomic.write_bytes(target, buf.getvalue())
                except FileNotFoundError:  # a compaction removed the day's folder as it was made: again
                    atomic.write_bytes(target, buf.getvalue())
            except DiskFullError as e:  # the store's disk, not the data root's
                raise DiskFullError(
                    e.message,
                    f"free space where ${SHARED_ENV} points ({self.path}: df -h {self.path}); the run stays in the "
                    "local warehouse and `sme2 warehouse publish` adds it to the store later",
                ) from e
            except Sme2Error:
                raise
            except OSError as e:
                raise WarehouseError(
                    f"cannot write {target} in the shared store: {e.strerror or e}",
                    f"check that ${SHARED_ENV} ({self.path}) is mounted and writable on this host; the run stays"
                    " in the local warehouse and `sme2 warehouse publish` adds it to the store later",
                ) from e
        return True

    # ------------------------------------------------------------------ compaction

    def compact(self, by: str = "month", min_files: int = 2, say=None) -> "Compaction":
        """Merge each device's files of one month (or day: `by`) into one batch file per table,
        written in `date=<YYYY-MM>` (or the day's) folder, the runs batch last, then delete the
        files merged. Groups with fewer than `min_files` runs files are left as they are. Safe beside
        publishing hosts and readers (module doc); one compaction at a time per store."""
        if by not in COMPACT_BY:
            raise WarehouseError(f"cannot compact by {by!r}", f"use one of {', '.join(COMPACT_BY)}")
        done = Compaction()
        runs_root = self.data / "runs"
        if not runs_root.is_dir():
            return done
        groups: dict[tuple[str, str], list[Path]] = {}  # (period, device folder) -> runs folders
        for folder in sorted(runs_root.glob("date=*/device=*")):
            day = folder.parent.name.removeprefix("date=")
            period = day[:7] if by == "month" else day
            groups.setdefault((period, folder.name), []).append(folder.relative_to(runs_root))
        with file_lock(self.path / ".compact.lock", timeout_s=5, what="a compaction of the shared store"):
            for (period, device_dir), folders in groups.items():
                runs_files = sorted(f for where in folders for f in (runs_root / where).glob("*.parquet"))
                if len(runs_files) < min_files:
                    continue
                source = self._committed(runs_files)
                if not source:
                    continue
                target = Path(f"date={period}") / device_dir
                stamp = f"{BATCH_PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"
                merged: list[Path] = []
                for table in PUBLISHED:  # runs LAST: the batch's commit marker
                    files = sorted(f for where in folders for f in (self.data / table / where).glob("*.parquet"))
                    pieces = []
                    for f in files:
                        if not (f.stem.startswith(BATCH_PREFIX) or f.stem in source):
                            continue  # a run still being published: not ours to touch
                        merged.append(f)
                        mine = [run_id for run_id, src in source.items() if src == f.stem]
                        if mine:
                            t = pq.read_table(f)
                            keep = pc.is_in(t["run_id"].cast(pa.string()), value_set=pa.array(mine, pa.string()))
                            pieces.append(t.filter(keep))
                    if pieces:
                        buf = io.BytesIO()
                        pq.write_table(pa.concat_tables(pieces), buf, compression="zstd")
                        atomic.write_bytes(self.data / table / target / f"{stamp}.parquet", buf.getvalue())
                        done.files_written += 1
                for f in merged:  # every run of these is in the new batch now
                    f.unlink(missing_ok=True)
                for where in folders:  # emptied day folders: every query globs them (10x the cost)
                    for table in PUBLISHED:
                        for empty in (self.data / table / where, self.data / table / where.parent):
                            with contextlib.suppress(OSError):  # not empty (a publish is writing): kept
                                empty.rmdir()
                done.files_removed += len(merged)
                done.partitions += 1
                done.runs += len(source)
                if say:
                    say(f"{target}: {len(source)} runs, {len(merged)} files merged")
        return done

    # ------------------------------------------------------------------ reading

    def union_views(self, conn) -> bool:
        """Temp views on `conn` (a connection to a local warehouse) named like the tables, over the
        local rows plus the store's runs the local file lacks. False (no views) if the store holds
        no run yet. Each run of the store appears once, even if two hosts published it."""
        if not self.has_files("runs"):
            return False
        db = conn.execute("SELECT current_database()").fetchone()[0]
        local = f'"{db}".main'

        def scan(table: str, glob: str | None = None) -> str:
            where = _literal(glob or self.glob(table))
            return f"read_parquet({where}, hive_partitioning = false, union_by_name = false, filename = true)"

        batches = self.has_batches()
        if batches:  # each compacted run's rows from the newest batch listing it (see the module doc)
            conn.execute(
                f"""CREATE OR REPLACE TEMP VIEW _shared_batched AS
                    SELECT run_id, max(parse_filename(filename, true)) AS source
                    FROM {scan("runs", self.batch_glob("runs"))} GROUP BY run_id"""
            )

        def rows(table: str) -> str:
            rule = "run_id IN (SELECT run_id FROM _shared_runs)"
            if batches:
                rule += f""" AND (CASE WHEN parse_filename(filename, true) LIKE '{BATCH_PREFIX}%'
                    THEN run_id || '/' || parse_filename(filename, true) IN (SELECT run_id || '/' || source FROM _shared_batched)
                    ELSE run_id NOT IN (SELECT run_id FROM _shared_batched) END)"""
            else:  # batches of a compaction that has not written its runs batch yet do not count
                rule += f" AND parse_filename(filename, true) NOT LIKE '{BATCH_PREFIX}%'"
            return f"SELECT * EXCLUDE (filename) FROM {scan(table)} WHERE {rule}"

        conn.execute(
            f"""CREATE OR REPLACE TEMP VIEW _shared_runs AS
                SELECT * EXCLUDE (filename) FROM {scan("runs")}
                WHERE run_id NOT IN (SELECT run_id FROM {local}.runs)
                QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY ingested_at) = 1"""
        )
        conn.execute(
            f"CREATE OR REPLACE TEMP VIEW runs AS SELECT * FROM {local}.runs UNION ALL BY NAME SELECT * FROM _shared_runs"
        )
        for table in PUBLISHED[:-1]:
            if self.has_files(table):
                conn.execute(
                    f"""CREATE OR REPLACE TEMP VIEW {table} AS
                        SELECT * FROM {local}.{table} UNION ALL BY NAME {rows(table)}"""
                )
        conn.execute(
            """CREATE OR REPLACE TEMP VIEW current_runs AS SELECT * FROM runs
               QUALIFY row_number() OVER (PARTITION BY run_key ORDER BY started_at DESC, run_id DESC) = 1"""
        )
        conn.execute(f"CREATE OR REPLACE TEMP VIEW op_counts AS {OP_COUNTS_VIEW}")
        conn.execute(f"CREATE OR REPLACE TEMP VIEW op_instances AS {OP_INSTANCES_VIEW}")
        return True

    def sql_config(self) -> dict:
        """What a locked-down reader (kit.store.usersql) must allow: reading this folder only."""
        return {"allowed_directories": [str(self.path) + "/"]}
