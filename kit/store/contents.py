"""What a warehouse file holds, as `sme2 warehouse info` reports it: the rows of each table, the
schema version, and the run ids of the local file (a lab's shared store aside)."""

from __future__ import annotations

from kit.store.connection import scalar
from kit.store.schema import STORED_AS, TABLES


def row_counts(wh) -> tuple[dict[str, int], int | None]:
    """Rows per table (in TABLES order) and the schema version, read on one connection."""
    with wh.read() as conn:
        counts = {t: scalar(conn, f"SELECT count(*) FROM {STORED_AS.get(t, t)}") for t in TABLES}
        version = scalar(conn, "SELECT max(version) FROM schema_version")
    return counts, version


def local_run_ids(wh) -> set[str]:
    """The run ids in this file alone (not a lab's shared store)."""
    with wh.read(local=True) as conn:
        return {r[0] for r in conn.execute("SELECT run_id FROM runs").fetchall()}
