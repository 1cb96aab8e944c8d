"""The summary of one profiled run, as every front end shows it: `sme2 profile` (its table and
--json), the MCP `profile` tool, experiment configs and the Dagster `device_trace` asset all take
their numbers from `summarize`, so a median, a coverage or a share of Method::execute is computed
one way (kit.stats.summary) and read one way, whatever shows it. Values are JSON-native (NaN is
None); front ends only choose which entries to show and how to format them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kit.profile.session import ProfileResult

TOP_OPERATORS = 10  # operators a summary lists, slowest first


def native(value):
    """A JSON-native value: numpy scalars as Python ones, NaN (and pandas' missing values) as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as dicts of JSON-native values (numbers unrounded: the same floats the frame holds)."""
    return [{str(k): native(v) for k, v in row.items()} for row in df.to_dict("records")]


def summarize(result: ProfileResult, operators: int = TOP_OPERATORS) -> dict:
    """One run: what it measured (id, variant, target, size, threads, emulated), end to end (the
    timing run's median, CV and 95% interval), Method::execute's median in the ETDump run, the
    coverage (how much of execute the operators explain), a counted run's instructions and
    estimated cycles of Method::execute (else None), the blog categories with their share of
    Method::execute, and the `operators` slowest operators."""
    rec, a = result.record, result.analysis
    counted = (rec.results.get("counts") or {}).get("execute") or {}
    ci = a.e2e.get("median_ci95_ms") or [None, None]
    return {
        "run_id": rec.run_id,
        "variant": rec.variant,
        "target": rec.target,
        "size": rec.size,
        "threads": rec.threads,
        "emulated": rec.emulated,
        "e2e_median_ms": native(a.e2e["median_ms"]),
        "e2e_cv_percent": native(a.e2e["cv_percent"]),
        "e2e_ci95_ms": [native(v) for v in ci],
        "execute_median_ms": native(a.execute["median_ms"]),
        "coverage": native(a.coverage),
        "instructions": native(counted.get("instructions")),
        "est_cycles": native(counted.get("est_cycles")),
        "categories": records(a.category_table("blog")),
        "top_operators": records(a.op_stats.head(operators)),
    }
