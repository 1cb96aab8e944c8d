"""Per-run analysis: per-operator robust statistics, category totals per iteration and their share
of Method::execute, coverage (how much of execute the operators explain), and what fell into Other.

Operators are aggregated per iteration first (an op type that runs 12 times contributes the sum of
its 12 instances to each iteration), then summarized over iterations: the median of per-iteration
totals is the number that adds up across operators.

One definition of a share everywhere (`share`): a shown median over the shown median of what it is
a share of, so a reader can check every percentage against the two numbers beside it: an
operator's or a category's share of Method::execute is its median ms / Method::execute's median
ms; of the operators, / the median of the operators' per-iteration sum."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.core import atomic
from kit.stats import categories, robust
from kit.trace.etdump import Trace


def share(part, whole):
    """part / whole (numbers or arrays of them), NaN where whole is not positive."""
    part, whole = np.asarray(part, dtype=float), np.asarray(whole, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(whole > 0, part / np.where(whole > 0, whole, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


@dataclass
class Analysis:
    e2e: dict  # robust stats of the timing run's end-to-end latencies (Arm-kit keys)
    e2e_samples: list[float]
    execute: dict  # robust stats of Method::execute in the ETDump run
    op_stats: pd.DataFrame  # one row per op type
    category_stats: pd.DataFrame  # one row per (scheme, category)
    per_iteration: pd.DataFrame  # iteration x (scheme, category) totals, plus operators and execute
    coverage: float  # sum of operator medians / Method::execute median
    other_ops: list[str]  # op types that fell into Other (blog) or OTHER (fine)
    execute_breakdown: dict | None = None  # where Method::execute goes besides operators (see below)

    def category_table(self, scheme: str = "blog") -> pd.DataFrame:
        return self.category_stats[self.category_stats.scheme == scheme].drop(columns="scheme").reset_index(drop=True)


def analyze(trace: Trace, e2e_latencies_ms, rules) -> Analysis:
    ops = categories.label(trace.operators, rules)
    execute_ms = trace.method_ms
    iters = np.arange(trace.iterations)

    # Per-iteration totals per op type, then robust stats across iterations.
    per_op = (
        ops.groupby(["op_type", "iteration"], sort=False)["duration_ms"]
        .sum()
        .unstack(fill_value=0.0)
        .reindex(columns=iters, fill_value=0.0)
    )
    first = ops.drop_duplicates("op_type").set_index("op_type")
    instances = ops[ops.iteration == 0].groupby("op_type").size()
    rows = []
    for op_type, samples in per_op.iterrows():
        meta = first.loc[op_type]
        rows.append(
            {
                "op_type": op_type,
                "category": meta["category"],
                "fine_category": meta["fine_category"],
                "delegated": bool(meta["delegated"]),
                "backend": meta["backend"],
                "kernel_hint": meta["kernel_hint"],
                "instances": int(instances.get(op_type, 0)),
                **robust.summary_row(samples.to_numpy()),
            }
        )
    op_stats = pd.DataFrame(rows).sort_values("median_ms", ascending=False, ignore_index=True)
    exec_median = float(np.median(execute_ms))
    op_stats["share_of_execute"] = share(op_stats["median_ms"], exec_median)

    per_iteration = pd.DataFrame(
        {
            "iteration": iters,
            "execute_ms": execute_ms,
            "operators_ms": ops.groupby("iteration")["duration_ms"].sum().reindex(iters, fill_value=0.0).to_numpy(),
        }
    )
    cat_rows = []
    for scheme, column in (("blog", "category"), ("fine", "fine_category")):
        totals = (
            ops.groupby([column, "iteration"])["duration_ms"]
            .sum()
            .unstack(fill_value=0.0)
            .reindex(columns=iters, fill_value=0.0)
        )
        for cat, samples in totals.iterrows():
            per_iteration[f"{scheme}:{cat}"] = samples.to_numpy()
            s = robust.summary_row(samples.to_numpy())
            cat_rows.append(
                {
                    "scheme": scheme,
                    "category": cat,
                    "median_ms": s["median_ms"],
                    "p10_ms": s["p10_ms"],
                    "p90_ms": s["p90_ms"],
                    "cv_percent": s["cv_percent"],
                    "ops": int((ops[ops.iteration == 0][column] == cat).sum()),
                }
            )
    category_stats = pd.DataFrame(cat_rows)
    category_stats["share_of_execute"] = share(category_stats["median_ms"], exec_median)
    category_stats["share_of_operators"] = share(
        category_stats["median_ms"], float(np.median(per_iteration["operators_ms"]))
    )
    order = {c: i for i, c in enumerate(categories.BLOG_ORDER)}
    category_stats["_o"] = [
        order.get(c, 99) if s == "blog" else 0 for s, c in zip(category_stats.scheme, category_stats.category)
    ]
    category_stats = (
        category_stats.sort_values(["scheme", "_o", "median_ms"], ascending=[True, True, False])
        .drop(columns="_o")
        .reset_index(drop=True)
    )

    coverage = share(op_stats["median_ms"].sum(), exec_median)
    other = sorted(set(op_stats.loc[(op_stats.category == "Other") | (op_stats.fine_category == "OTHER"), "op_type"]))
    breakdown = execute_breakdown(trace)
    return Analysis(
        e2e=robust.robust_stats(e2e_latencies_ms),
        e2e_samples=[float(x) for x in e2e_latencies_ms],
        execute=robust.robust_stats(execute_ms),
        op_stats=op_stats,
        category_stats=category_stats,
        per_iteration=per_iteration,
        coverage=coverage,
        other_ops=other,
        execute_breakdown=breakdown,
    )


def execute_breakdown(trace: Trace) -> dict:
    """Why operators do not add up to Method::execute, per iteration (medians, ms): the operator
    events; the rest of the delegate calls (XNNPACK's own work around its operators in each call:
    binding inputs and outputs, runtime setup, reading its profiler); and the executor's dispatch
    between instructions (time inside execute but in no instruction). The three add up to execute
    per iteration; their medians nearly do."""
    r = trace.rows
    iters = np.arange(trace.iterations)

    def per_iteration(mask) -> np.ndarray:
        return r[mask].groupby("iteration")["duration_ms"].sum().reindex(iters, fill_value=0.0).to_numpy()

    operator = r.row_kind == "operator"
    execute = per_iteration(r.row_kind == "method")
    calls = per_iteration(r.row_kind == "delegate_call")
    inner = per_iteration(operator & r.delegated)
    portable = per_iteration(operator & ~r.delegated)
    first = r[r.iteration == 0]
    return {
        "execute_ms": float(np.median(execute)),
        "operators_ms": float(np.median(inner + portable)),
        "delegate_overhead_ms": float(np.median(calls - inner)),
        "dispatch_ms": float(np.median(execute - calls - portable)),
        "delegate_calls": int((first.row_kind == "delegate_call").sum()),
        "instructions": int(((first.row_kind == "delegate_call") | (operator[first.index] & ~first.delegated)).sum()),
    }


def write(analysis: Analysis, folder: Path, stem: str, name: str = "") -> dict[str, Path]:
    """`<stem>_robust_stats.json` (Arm-kit keys), `<stem>_categories.csv` and `analysis.json`.
    The rest of Arm's kit files (`<stem>_exec_ops_stats.csv` among them) need the trace's rows:
    kit.profile.armkit writes them."""
    folder = Path(folder)
    robust = {
        **analysis.e2e,
        "latencies_ms": analysis.e2e_samples,
        "run_indices": list(range(len(analysis.e2e_samples))),
        "name": name or stem,
    }
    robust["method_execute"] = analysis.execute
    robust["operators"] = {
        r.op_type: {k: v for k, v in r._asdict().items() if k != "op_type"}
        for r in analysis.op_stats.itertuples(index=False)
    }
    paths = {
        "robust_stats": atomic.write_json(folder / f"{stem}_robust_stats.json", robust),
        "categories": atomic.write_text(folder / f"{stem}_categories.csv", analysis.category_stats.to_csv(index=False)),
    }
    paths["summary"] = atomic.write_json(folder / "analysis.json", summary_of(analysis))
    return paths


def summary_of(analysis: Analysis) -> dict:
    """The run's summary as `analysis.json` holds it: end to end, categories, top operators. A
    known-good run's analysis.json is its expected summary (`sme2 check regression-check`)."""
    return {
        "e2e_median_ms": analysis.e2e.get("median_ms"),
        "execute_median_ms": analysis.execute.get("median_ms"),
        "coverage": analysis.coverage,
        "execute_breakdown": analysis.execute_breakdown,
        "category_totals_ms": {r.category: r.median_ms for r in analysis.category_table("blog").itertuples()},
        "category_shares": {r.category: r.share_of_execute for r in analysis.category_table("blog").itertuples()},
        "fine_category_totals_ms": {r.category: r.median_ms for r in analysis.category_table("fine").itertuples()},
        "other_ops": analysis.other_ops,
        "top_operators": analysis.op_stats.head(10)[
            ["op_type", "category", "median_ms", "instances", "kernel_hint"]
        ].to_dict("records"),
    }
