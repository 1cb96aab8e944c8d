"""What a variant's report reads from the warehouse (kit.report.builder only renders): its current
runs, category times, estimated cycles of counted runs, operator medians, end-to-end and operator
history, kernel families, and the significant slowdowns the regression gate stored."""

from __future__ import annotations

import pandas as pd


def current_runs(wh, variant: str) -> pd.DataFrame:
    """The newest run of each key of the variant, by device, SME2 on first, threads."""
    return wh.query("SELECT * FROM current_runs WHERE variant = ? ORDER BY device, sme2 DESC, threads", [variant])


def category_times(wh, variant: str, scheme: str = "blog") -> pd.DataFrame:
    """Per current run (target, threads): each category's median time and share of execute."""
    return wh.query(
        "SELECT r.target, r.threads, c.category, c.median_ms, c.share_of_execute FROM category_stats c "
        "JOIN current_runs r USING (run_id) WHERE r.variant = ? AND c.scheme = ?",
        [variant, scheme],
    )


def category_cycles(wh, variant: str) -> pd.DataFrame:
    """Per counted current run (target, threads): each category's estimated cycles."""
    return wh.query(
        "SELECT r.target, r.threads, c.category, sum(c.est_cycles) AS est_cycles FROM op_counts c "
        "JOIN current_runs r USING (run_id) WHERE r.variant = ? GROUP BY ALL",
        [variant],
    )


def op_medians(wh, variant: str) -> pd.DataFrame:
    """Per current run at the variant's lowest thread count: each operator type's median time."""
    return wh.query(
        "SELECT r.target, s.op_type, s.category, s.median_ms FROM op_stats s JOIN current_runs r USING (run_id) "
        "WHERE r.variant = ? AND r.threads = (SELECT min(threads) FROM current_runs WHERE variant = ?)",
        [variant, variant],
    )


def e2e_history(wh, variant: str) -> pd.DataFrame:
    """Every run of the variant, oldest first: end-to-end median and what it was measured on."""
    return wh.query(
        "SELECT started_at, target, threads, size, e2e_median_ms, emulated FROM runs WHERE variant = ? "
        "ORDER BY started_at",
        [variant],
    )


def op_history(wh, variant: str, op_types: list[str]) -> pd.DataFrame:
    """Every run of the variant, oldest first: the median time of each of `op_types`."""
    return wh.query(
        "SELECT r.started_at, r.target, s.op_type, s.median_ms FROM op_stats s JOIN runs r USING (run_id) "
        "WHERE r.variant = ? AND list_contains(?, s.op_type) ORDER BY r.started_at",
        [variant, list(op_types)],
    )


def kernel_families(wh, variant: str) -> pd.DataFrame:
    """Per current run: each kernel family's operator types and summed median time."""
    return wh.query(
        "SELECT r.target, k.kernel_family, count(*) AS op_types, round(sum(s.median_ms), 3) AS ms FROM kernels k "
        "JOIN op_stats s USING (run_id, op_type) JOIN current_runs r USING (run_id) WHERE r.variant = ? "
        "GROUP BY ALL ORDER BY r.target, k.kernel_family",
        [variant],
    )


def slowdowns(wh, variant: str, limit: int = 20) -> pd.DataFrame:
    """The significant slowdowns (one-sided: only slower) the regression gate found in current runs."""
    return wh.query(
        "SELECT g.run_id, r.target, g.scope, g.op_type, CASE WHEN g.change > 0 THEN 'slower' ELSE 'faster' END "
        "AS direction, round(g.baseline_median_ms, 4) AS baseline_ms, round(g.new_median_ms, 4) AS new_ms, "
        "round(100 * g.change, 1) AS change_pct, g.q_value, g.p_value FROM regressions g JOIN current_runs r "
        "USING (run_id) WHERE r.variant = ? AND g.significant AND g.change > 0 ORDER BY g.change DESC LIMIT ?",
        [variant, int(limit)],
    )
