"""What the regression gates read and write (kit.analysis.regress stays pure statistics): a run's
key and start, the earlier runs of its key, timing samples, per-iteration operator sums, the first
counted execution's instruction counts, operator instance counts, and the `regressions` rows a
check replaces."""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_COLUMNS = ("run_id", "run_key", "emulated", "started_at")


def run_row(wh, run_id: str) -> pd.DataFrame:
    """The run's id, key, emulated flag and start (empty: not in the warehouse)."""
    return wh.query(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ?", [run_id])


def earlier_runs(wh, run_key: str, before, exclude: str, limit: int, counted: bool = False) -> list[str]:
    """The newest runs of `run_key` started before `before` (not `exclude`), newest first; with
    `counted`, only runs that have instruction counts."""
    only_counted = "AND EXISTS (SELECT 1 FROM op_event_counts c WHERE c.run_id = r.run_id)" if counted else ""
    rows = wh.query(
        f"""SELECT r.run_id FROM runs r WHERE r.run_key = ? AND r.started_at < ? AND r.run_id <> ? {only_counted}
            ORDER BY r.started_at DESC LIMIT ?""",
        [run_key, before, exclude, int(limit)],
    )
    return rows.run_id.tolist()


def timing_samples(wh, run_ids: list[str]) -> np.ndarray:
    """End-to-end latencies (ms) of the runs' measured iterations."""
    rows = wh.query(
        "SELECT latency_ms FROM latency_samples WHERE list_contains(?, run_id) AND kind = 'timing'", [list(run_ids)]
    )
    return rows.latency_ms.to_numpy()


def op_iteration_sums(wh, run_ids: list[str]) -> pd.DataFrame:
    """Per run, iteration and operator type: the summed duration (ms)."""
    return wh.query(
        "SELECT run_id, iteration, op_type, sum(duration_ms) AS ms FROM op_events "
        "WHERE list_contains(?, run_id) GROUP BY ALL",
        [list(run_ids)],
    )


def first_execution_counts(wh, run_ids: list[str], columns: tuple[str, ...]) -> pd.DataFrame:
    """Per run and operator type (and Method::execute), the counted quantities of the first
    counted execution, summed over the type's instances."""
    for c in columns:
        if not c.isidentifier():
            raise ValueError(f"not a column name: {c!r}")
    sums = ", ".join(f"sum({c}) AS {c}" for c in columns)
    return wh.query(
        f"""SELECT run_id, op_type, {sums} FROM op_event_counts
            WHERE list_contains(?, run_id) AND iteration = 0 AND row_kind IN ('operator', 'method') GROUP BY ALL""",
        [list(run_ids)],
    )


def op_instances(wh, run_id: str) -> dict[str, int]:
    """Operator type -> instances per execution, of one run."""
    return dict(wh.query("SELECT op_type, instances FROM op_stats WHERE run_id = ?", [run_id]).itertuples(index=False))


def replace_regressions(wh, run_id: str, rows: pd.DataFrame) -> None:
    """The run's `regressions` rows, replaced in one transaction (re-checking never duplicates)."""
    with wh.write() as conn:
        conn.execute("BEGIN TRANSACTION")
        conn.execute("DELETE FROM regressions WHERE run_id = ?", [run_id])
        conn.register("_r", rows)
        conn.execute("INSERT INTO regressions SELECT * FROM _r")
        conn.unregister("_r")
        conn.execute("COMMIT")
