"""The questions users ask every day, as named, parameterized SQL over the warehouse.

`sme2 query NAME --param k=v` runs one; `sme2 query --list` shows them. All read `current_runs`
(the newest run of each key) unless they are about history."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kit.core.errors import WarehouseError
from kit.store.connection import first_row
from kit.store.warehouse import Warehouse


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    sql: str
    params: dict[str, str]  # name -> default ('' = required)


QUERIES = {
    q.name: q
    for q in (
        NamedQuery(
            "latest-ops",
            "Latest per-operator medians for a model partition on a target (newest run of each thread count).",
            """SELECT r.variant, r.target, r.threads, r.size, s.op_type, s.category, s.instances, round(s.median_ms, 4) AS median_ms,
                      round(s.p10_ms, 4) AS p10_ms, round(s.p90_ms, 4) AS p90_ms, round(s.cv_percent, 1) AS cv_percent,
                      round(100 * s.share_of_execute, 1) AS pct_of_execute, s.kernel_hint, r.emulated, r.run_id
               FROM current_runs r JOIN op_stats s USING (run_id)
               WHERE r.variant = $variant AND ($target = '' OR r.target = $target)
               ORDER BY r.target, r.threads, s.median_ms DESC""",
            {"variant": "", "target": ""},
        ),
        NamedQuery(
            "op-history",
            "History of one operator (substring match on its type) across runs and nights.",
            """SELECT r.started_at, r.variant, r.target, r.threads, r.size, s.op_type, round(s.median_ms, 4) AS median_ms,
                      round(s.ci_low_ms, 4) AS ci_low_ms, round(s.ci_high_ms, 4) AS ci_high_ms, r.executorch_version, r.emulated, r.run_id
               FROM runs r JOIN op_stats s USING (run_id)
               WHERE s.op_type ILIKE '%' || $op || '%' AND ($variant = '' OR r.variant = $variant) AND ($target = '' OR r.target = $target)
                 AND r.started_at >= CAST($since AS TIMESTAMP)
               ORDER BY s.op_type, r.variant, r.target, r.threads, r.started_at""",
            {"op": "", "variant": "", "target": "", "since": "1970-01-01"},
        ),
        NamedQuery(
            "category-shares",
            "Category shares of Method::execute, SME2 on vs off, per device and model variant (blog scheme).",
            """WITH c AS (
                 SELECT r.device, r.variant, r.threads, r.size, r.emulated, r.sme2, c.category, c.median_ms, c.share_of_execute
                 FROM current_runs r JOIN category_stats c USING (run_id)
                 WHERE c.scheme = 'blog' AND ($variant = '' OR r.variant = $variant) AND r.started_at >= CAST($since AS TIMESTAMP))
               SELECT device, variant, threads, size, emulated, category,
                      round(max(median_ms) FILTER (WHERE NOT sme2), 4) AS off_ms, round(max(median_ms) FILTER (WHERE sme2), 4) AS on_ms,
                      round(100 * max(share_of_execute) FILTER (WHERE NOT sme2), 1) AS off_pct, round(100 * max(share_of_execute) FILTER (WHERE sme2), 1) AS on_pct
               FROM c GROUP BY ALL ORDER BY device, variant, threads, category""",
            {"variant": "", "since": "1970-01-01"},
        ),
        NamedQuery(
            "biggest-changes",
            "Operators whose median changed most between two runs (default: the two newest runs of a key).",
            """SELECT coalesce(x.op_type, y.op_type) AS op_type, round(x.median_ms, 4) AS before_ms, round(y.median_ms, 4) AS after_ms,
                      round(y.median_ms - x.median_ms, 4) AS delta_ms, round(y.median_ms / nullif(x.median_ms, 0), 3) AS ratio,
                      $run_a AS run_a, $run_b AS run_b
               FROM (SELECT * FROM op_stats WHERE run_id = $run_a) x
               FULL OUTER JOIN (SELECT * FROM op_stats WHERE run_id = $run_b) y ON x.op_type = y.op_type
               ORDER BY abs(coalesce(y.median_ms, 0) - coalesce(x.median_ms, 0)) DESC""",
            {"run_a": "", "run_b": "", "variant": "", "target": ""},
        ),
        NamedQuery(
            "module-totals",
            "Time per nn.Module (each operator counted once, in its module; XNNPACK's operators by position in their delegate) for a model partition's current runs.",
            """WITH per_iteration AS (
                 SELECT r.run_id, r.target, r.threads, r.execute_median_ms, e.module, e.iteration,
                        sum(e.duration_ms) AS ms, count(*) AS events
                 FROM current_runs r JOIN op_events e USING (run_id)
                 WHERE r.variant = $variant AND ($target = '' OR r.target = $target) GROUP BY ALL)
               SELECT target, threads, module, max(events) AS operators, round(median(ms), 4) AS median_ms,
                      round(100 * median(ms) / any_value(execute_median_ms), 1) AS pct_of_execute, run_id
               FROM per_iteration GROUP BY target, threads, module, run_id
               ORDER BY target, threads, median_ms DESC""",
            {"variant": "", "target": ""},
        ),
        NamedQuery(
            "runs",
            "Recent runs with their end-to-end medians and conditions.",
            """SELECT started_at, run_id, variant, target, size, threads, runner, emulated, round(e2e_median_ms, 4) AS e2e_median_ms,
                      round(e2e_cv_percent, 1) AS cv_percent, round(coverage, 3) AS coverage, cpu_model,
                      run_id IN (SELECT run_id FROM current_runs) AS current
               FROM runs WHERE ($variant = '' OR variant = $variant) ORDER BY started_at DESC LIMIT CAST($limit AS INTEGER)""",
            {"variant": "", "limit": "50"},
        ),
    )
}


def run(wh: Warehouse, name: str, params: dict[str, str]) -> pd.DataFrame:
    q = QUERIES.get(name)
    if q is None:
        raise WarehouseError(f"no named query {name!r}", f"available: {', '.join(QUERIES)}")
    unknown = set(params) - set(q.params)
    if unknown:
        raise WarehouseError(
            f"query {name!r} has no parameter(s) {sorted(unknown)}", f"its parameters: {', '.join(q.params)}"
        )
    values = {**q.params, **params}
    missing = [k for k, default in q.params.items() if default == "" and not values.get(k) and k in _required(name)]
    if missing:
        raise WarehouseError(f"query {name!r} needs {', '.join(missing)}", f"pass --param {missing[0]}=...")
    with wh.read() as conn:  # one connection for the whole answer: opening the file is most of its cost
        if name == "biggest-changes":
            values = _resolve_pair(conn, values)
        try:
            return conn.execute(q.sql, values).df()
        except Exception as e:  # duckdb errors: name the query
            raise WarehouseError(
                f"query {name!r} failed: {str(e).splitlines()[0]}", "check the parameters (timestamps as YYYY-MM-DD)"
            ) from e


def _resolve_pair(conn, v: dict) -> dict:
    """run_b defaults to the newest run of variant/target, run_a to the run before it (same key)."""
    if not v["run_b"]:
        if not v["variant"] or not v["target"]:
            raise WarehouseError(
                "biggest-changes needs run_a and run_b, or variant and target",
                "e.g. --param variant=tiny_seg-fp32 --param target=host.sme2-off",
            )
        row = first_row(
            conn,
            "SELECT run_id FROM runs WHERE variant = ? AND target = ? ORDER BY started_at DESC, run_id DESC LIMIT 1",
            [v["variant"], v["target"]],
        )
        if not row:
            raise WarehouseError(f"no runs of {v['variant']} on {v['target']}", "sme2 query runs lists what is there")
        v["run_b"] = row[0]
    if not v["run_a"]:
        row = first_row(
            conn,
            "SELECT b.run_id FROM runs a JOIN runs b ON a.run_key = b.run_key AND b.started_at <= a.started_at AND b.run_id <> a.run_id WHERE a.run_id = ? ORDER BY b.started_at DESC LIMIT 1",
            [v["run_b"]],
        )
        if not row:
            raise WarehouseError(
                f"run {v['run_b']} has no earlier run of the same key to compare with",
                "pass --param run_a=... explicitly",
            )
        v["run_a"] = row[0]
    return {k: v[k] for k in ("run_a", "run_b")}


def _required(name: str) -> set[str]:
    return {"latest-ops": {"variant"}, "op-history": {"op"}, "module-totals": {"variant"}}.get(name, set())
