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

Every file of a store version has the same columns (the warehouse schema of that version), so the
views read the files without reconciling schemas by name (DuckDB then reads one file's footer at
bind time, not every file's: 12 ms instead of 330 ms for 600 files here). A schema migration
starts a new version folder, and each host republishes its runs into it from its own file (`sme2
warehouse publish`): the store is derived from the hosts' files, which stay the source."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from kit.core import atomic, names
from kit.core.errors import Sme2Error, WarehouseError
from kit.store.schema import SCHEMA_VERSION

SHARED_ENV = "SME2_SHARED_STORE"
# Published per run; `runs` LAST: a run exists in the store once its runs file does.
PUBLISHED = ("latency_samples", "op_events", "op_stats", "category_stats", "kernels", "artifacts", "runs")
LOCAL_ONLY = ("run_no",)  # a local database's own numbering: meaningless in the store
_GLOB_CHARS = set("*?[]{}'\"\\")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


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

    def has_files(self, table: str) -> bool:
        folder = self.data / table
        return folder.is_dir() and next(folder.glob("date=*/device=*/*.parquet"), None) is not None

    def run_ids(self) -> set[str]:
        """Runs in the store (those whose commit marker, the runs file, exists)."""
        return {p.stem for p in self.files("runs")}

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
        if self.file("runs", day, device, run_id).exists():
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
                atomic.write_bytes(target, buf.getvalue())
            except Sme2Error:  # disk full: says so, names the file
                raise
            except OSError as e:
                raise WarehouseError(
                    f"cannot write {target} in the shared store: {e.strerror or e}",
                    f"check that ${SHARED_ENV} ({self.path}) is mounted and writable on this host; the run stays"
                    " in the local warehouse and `sme2 warehouse publish` adds it to the store later",
                ) from e
        return True

    # ------------------------------------------------------------------ reading

    def union_views(self, conn) -> bool:
        """Temp views on `conn` (a connection to a local warehouse) named like the tables, over the
        local rows plus the store's runs the local file lacks. False (no views) if the store holds
        no run yet. Each run of the store appears once, even if two hosts published it."""
        if not self.has_files("runs"):
            return False
        db = conn.execute("SELECT current_database()").fetchone()[0]
        local = f'"{db}".main'

        def scan(table: str) -> str:
            return f"read_parquet({_literal(self.glob(table))}, hive_partitioning = false, union_by_name = false)"

        conn.execute(
            f"""CREATE OR REPLACE TEMP VIEW _shared_runs AS
                SELECT * FROM {scan("runs")}
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
                        SELECT * FROM {local}.{table} UNION ALL BY NAME
                        SELECT * FROM {scan(table)} WHERE run_id IN (SELECT run_id FROM _shared_runs)"""
                )
        conn.execute(
            """CREATE OR REPLACE TEMP VIEW current_runs AS SELECT * FROM runs
               QUALIFY row_number() OVER (PARTITION BY run_key ORDER BY started_at DESC, run_id DESC) = 1"""
        )
        return True

    def sql_config(self) -> dict:
        """What a locked-down reader (kit.store.usersql) must allow: reading this folder only."""
        return {"allowed_directories": [str(self.path) + "/"]}
