"""Reading the lab store of earlier releases (before the DuckLake), for `sme2 warehouse migrate` only.

That store was a folder of Parquet files, one per table per run,
`<store>/v<schema>/<table>/date=<day>/device=<device>/<run_id>.parquet`, the `runs` file written last
as the run's commit marker, and compactions that merged a device's month into
`batch-<stamp>.parquet` files. A run's rows are read from the newest batch whose runs file lists it,
else from its own files; files of a run without a runs file (a publish cut short) are not part of
the store. `rows_sql` reproduces exactly that reader."""

from __future__ import annotations

from pathlib import Path

from kit.store.schema import SCHEMA_VERSION

BATCH_PREFIX = "batch-"
_GLOB_CHARS = set("*?[]{}'\"\\")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class LegacyStore:
    def __init__(self, path: Path, version: int = SCHEMA_VERSION):
        self.path = Path(path)
        self.data = self.path / f"v{version}"

    def exists(self) -> bool:
        folder = self.data / "runs"
        return folder.is_dir() and next(folder.glob("date=*/device=*/*.parquet"), None) is not None

    def has_files(self, table: str) -> bool:
        folder = self.data / table
        return folder.is_dir() and next(folder.glob("date=*/device=*/*.parquet"), None) is not None

    def _scan(self, table: str, batches_only: bool = False) -> str:
        name = f"{BATCH_PREFIX}*.parquet" if batches_only else "*.parquet"
        glob = str(self.data / table / "date=*" / "device=*" / name)
        if _GLOB_CHARS & set(str(self.path)):
            raise ValueError(f"store path {self.path} contains glob or quote characters")
        return f"read_parquet({_literal(glob)}, hive_partitioning = false, union_by_name = true, filename = true)"

    def prepare(self, conn) -> None:
        """Temp views `_legacy_runs` (each committed run once) and `_legacy_batched` on `conn`."""
        batches = next((self.data / "runs").glob(f"date=*/device=*/{BATCH_PREFIX}*.parquet"), None) is not None
        if batches:
            conn.execute(
                f"""CREATE OR REPLACE TEMP VIEW _legacy_batched AS
                    SELECT run_id, max(parse_filename(filename, true)) AS source
                    FROM {self._scan("runs", batches_only=True)} GROUP BY run_id"""
            )
        self._batches = batches
        conn.execute(
            f"""CREATE OR REPLACE TEMP VIEW _legacy_runs AS
                SELECT * EXCLUDE (filename) FROM ({self.rows_sql("runs", keep_filename=True)})
                QUALIFY row_number() OVER (PARTITION BY run_id ORDER BY ingested_at) = 1"""
        )

    def rows_sql(self, table: str, keep_filename: bool = False) -> str:
        """The committed rows of `table`, each run from the file the old reader took it from."""
        if self._batches:
            rule = f"""(CASE WHEN parse_filename(filename, true) LIKE '{BATCH_PREFIX}%'
                THEN run_id || '/' || parse_filename(filename, true) IN (SELECT run_id || '/' || source FROM _legacy_batched)
                ELSE run_id NOT IN (SELECT run_id FROM _legacy_batched) END)"""
        else:
            rule = f"parse_filename(filename, true) NOT LIKE '{BATCH_PREFIX}%'"
        if table != "runs":
            rule += " AND run_id IN (SELECT run_id FROM _legacy_runs)"
        else:  # a runs file is its run's commit marker: every runs row is committed
            pass
        select = "*" if keep_filename else "* EXCLUDE (filename)"
        return f"SELECT {select} FROM {self._scan(table)} WHERE {rule}"
