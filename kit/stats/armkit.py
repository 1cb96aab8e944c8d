"""The tables of Arm's SME2 profiling kit, with its exact column names, computed from our rows.

Arm's kit (ArmDeveloperEcosystem/sme-executorch-profiling) turns each ETDump into CSV files with
its `etdump_to_csv.py` and `analyze_etdump_csv.py` tools; users' scripts read those files. These
functions build the same tables from the rows our warehouse holds for a run (the trace rows of
`kit.trace.etdump`, labelled with our categories), so the numbers in the files are the warehouse's:

    timeline          *_exec_all_runs_timeline.csv, *_exec_run0_timeline.csv (etdump_to_csv)
    ops_stats         *_exec_ops_stats.csv (etdump_to_csv; our per-operator statistics follow)
    category_summary  *_category_summary.csv (analyze_etdump_csv)
    operator_details  *_operator_details.csv, *_other_top_ops.csv (analyze_etdump_csv)
    e2e_latency       *_e2e_latency.csv (analyze_etdump_csv)
    kernels           *_kernels.csv (xnntrace_to_kernels)
    comparison        *_comparison.csv (analyze_etdump_csv --compare)

The kit's statistics are kept: totals over all iterations and their mean per iteration (`avg_ms`),
percentages of the mean Method::execute. Where the kit reads something our data does not have
(e.g. the microkernel name, which only a kernel-log runner prints), the cell is empty (null)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from kit.trace import kernels as kernel_names

TIMELINE_COLUMNS = [
    "model_id",
    "name",
    "type",
    "delegate_backend",
    "start_us",
    "end_us",
    "duration_ms",
    "pct_total",
    "node_id",
    "run_index",
    "block",
]
OPS_STATS_COLUMNS = ["model_id", "name", "type", "delegate_backend", "count", "total_ms", "avg_ms", "pct_total"]
CATEGORY_SUMMARY_COLUMNS = ["category", "total_ms", "avg_ms", "pct_of_e2e", "operator_count"]
OPERATOR_DETAILS_COLUMNS = ["operator", "category", "total_ms", "avg_ms", "pct_of_e2e", "event_count"]
E2E_LATENCY_COLUMNS = ["model_name", "num_runs", "total_ms", "avg_ms", "min_ms", "max_ms"]
KERNELS_COLUMNS = [
    "model_id",
    "kernel_name",
    "category",
    "count",
    "dtype",
    "xnn_op",
    "variant",
    "ukernel_shape",
    "arch_chain",
    "has_sme",
    "has_sme2",
]
# The block Inspector names the execution events of a method; ours are all of that block.
BLOCK = "Execute"
# analyze_etdump_csv keeps its top two OTHER operators.
TOP_OTHER = 2


def timeline(rows: pd.DataFrame, model_id: str, run_index: int | None = None) -> pd.DataFrame:
    """etdump_to_csv's timeline: one row per event per iteration (Method::execute, DELEGATE_CALL,
    operators), `pct_total` of the iteration's summed event time as the kit computes it (nested
    events included). `start_us` is relative to the iteration's Method::execute start (the kit
    writes the raw clock); `node_id` is the event's position within its iteration, the same for
    the same event in every iteration; `run_index` counts iterations after the warmups."""
    df = rows if run_index is None else rows[rows.iteration == run_index]
    df = df.sort_values(["iteration", "seq"], kind="stable")
    delegated_op = (df.row_kind == "operator") & df.delegated.astype(bool)
    out = pd.DataFrame(
        {
            "model_id": model_id,
            "name": df.event_name.to_numpy(),
            "type": df.op_type.to_numpy(),
            # The kit's choose_backend: the delegate's name for delegate-internal events, else portable.
            "delegate_backend": np.where(delegated_op, df.backend.astype(str), "portable"),
            "start_us": df.start_us.to_numpy(dtype=float),
            "end_us": df.start_us.to_numpy(dtype=float) + 1000.0 * df.duration_ms.to_numpy(dtype=float),
            "duration_ms": df.duration_ms.to_numpy(dtype=float),
            "node_id": df.groupby("iteration").cumcount().to_numpy(),
            "run_index": df.iteration.to_numpy(),
            "block": BLOCK,
        }
    )
    totals = out.groupby("run_index").duration_ms.transform("sum")
    out["pct_total"] = np.where(totals > 0, out.duration_ms / totals * 100.0, 0.0)
    return out[TIMELINE_COLUMNS]


def ops_stats(rows: pd.DataFrame, model_id: str, op_stats: pd.DataFrame | None = None) -> pd.DataFrame:
    """etdump_to_csv's `*_ops_stats.csv`: per (type, backend), `count` instances per iteration,
    `total_ms` their mean summed time per iteration, `avg_ms` per instance, `pct_total` of all
    events' time (nested events included, as the kit computes it); slowest first. With `op_stats`
    (our per-operator statistics) its columns follow, `count` renamed `iterations`; they are empty
    on the framework rows (Method::execute, DELEGATE_CALL) that are not operators."""
    iterations = max(int(rows.iteration.nunique()), 1)
    tl = timeline(rows, model_id)
    g = tl.groupby(["type", "delegate_backend"], sort=False).duration_ms.agg(["size", "sum"]).reset_index()
    grand = float(tl.duration_ms.sum()) / iterations
    out = pd.DataFrame(
        {
            "model_id": model_id,
            "name": g["type"],
            "type": g["type"],
            "delegate_backend": g["delegate_backend"],
            "count": (g["size"] // iterations).astype(int),
            "total_ms": g["sum"] / iterations,
        }
    )
    out["avg_ms"] = np.where(out["count"] > 0, out.total_ms / out["count"].clip(lower=1), 0.0)
    out["pct_total"] = out.total_ms / grand * 100.0 if grand > 0 else 0.0
    out = out.sort_values("total_ms", ascending=False, ignore_index=True)[OPS_STATS_COLUMNS]
    if op_stats is None or op_stats.empty:
        return out
    ours = op_stats.rename(columns={"count": "iterations"})
    ours = ours.assign(_backend=np.where(ours.delegated.astype(bool), ours.backend.astype(str), "portable"))
    merged = out.merge(
        ours, how="left", left_on=["type", "delegate_backend"], right_on=["op_type", "_backend"], sort=False
    ).drop(columns=["_backend"])
    for col in ("instances", "iterations"):  # integers, empty on the framework rows
        if col in merged:
            merged[col] = merged[col].astype("Int64")
    return merged


def _per_run(events: pd.DataFrame) -> int:
    return max(int(events.iteration.nunique()), 1)


def e2e_latency(execute_ms, model_name: str) -> pd.DataFrame:
    """analyze_etdump_csv's E2E table: Method::execute per iteration (the ETDump run)."""
    x = np.asarray(execute_ms, dtype=float)
    return pd.DataFrame(
        [
            {
                "model_name": model_name,
                "num_runs": int(x.size),
                "total_ms": float(x.sum()),
                "avg_ms": float(x.mean()) if x.size else float("nan"),
                "min_ms": float(x.min()) if x.size else float("nan"),
                "max_ms": float(x.max()) if x.size else float("nan"),
            }
        ],
        columns=E2E_LATENCY_COLUMNS,
    )


def category_summary(events: pd.DataFrame, execute_ms, column: str = "fine_category") -> pd.DataFrame:
    """analyze_etdump_csv's category table over operator events (framework events excluded), with
    our `fine` categories (the kit's uppercase names, plus PORTABLE for non-delegated operators):
    `total_ms` over all iterations, `avg_ms` per iteration, `pct_of_e2e` of the mean Method::execute,
    `operator_count` distinct event names. Slowest first."""
    runs = _per_run(events)
    e2e_avg = float(np.mean(execute_ms)) if len(execute_ms) else float("nan")
    g = events.groupby(column).agg(total_ms=("duration_ms", "sum"), operator_count=("event_name", "nunique"))
    out = pd.DataFrame(
        {
            "category": g.index.astype(str),
            "total_ms": g.total_ms.to_numpy(),
            "avg_ms": g.total_ms.to_numpy() / runs,
            "operator_count": g.operator_count.to_numpy().astype(int),
        }
    )
    out["pct_of_e2e"] = out.avg_ms / e2e_avg * 100.0 if e2e_avg > 0 else 0.0
    return out.sort_values(["avg_ms", "category"], ascending=[False, True], ignore_index=True)[CATEGORY_SUMMARY_COLUMNS]


def operator_details(events: pd.DataFrame, execute_ms, column: str = "fine_category") -> pd.DataFrame:
    """analyze_etdump_csv's operator table: per event name (XNNPACK names keep their `#n`, so each
    delegate operator is its own row), its category, totals, mean per iteration, share of the mean
    Method::execute and event count. Slowest first."""
    runs = _per_run(events)
    e2e_avg = float(np.mean(execute_ms)) if len(execute_ms) else float("nan")
    g = events.groupby("event_name", sort=False).agg(
        category=(column, "first"), total_ms=("duration_ms", "sum"), event_count=("duration_ms", "size")
    )
    out = pd.DataFrame(
        {
            "operator": g.index.astype(str),
            "category": g.category.astype(str).to_numpy(),
            "total_ms": g.total_ms.to_numpy(),
            "avg_ms": g.total_ms.to_numpy() / runs,
            "event_count": g.event_count.to_numpy().astype(int),
        }
    )
    out["pct_of_e2e"] = out.avg_ms / e2e_avg * 100.0 if e2e_avg > 0 else 0.0
    return out.sort_values(["avg_ms", "operator"], ascending=[False, True], ignore_index=True)[OPERATOR_DETAILS_COLUMNS]


def other_top_ops(details: pd.DataFrame) -> pd.DataFrame:
    """The kit's two slowest OTHER operators (an empty table, with its header, when there is none)."""
    return details[details.category == "OTHER"].head(TOP_OTHER).reset_index(drop=True)


def category_totals(events: pd.DataFrame, column: str = "category") -> dict[str, float]:
    """Mean per-iteration time per category (blog scheme by default), as analyze_results sums them."""
    runs = _per_run(events)
    return {str(k): float(v) / runs for k, v in events.groupby(column).duration_ms.sum().items()}


_XNN_ALGO = re.compile(r"\)\s*(IGEMM|GEMM|DWConv|VMulCAddC|SpMM)\b", re.I)
_LAYOUTS = {"NHWC", "NCHW", "NC", "ND", "NCW", "NWC"}


def kernels(op_stats: pd.DataFrame, model_id: str, microkernels: pd.DataFrame | None = None) -> pd.DataFrame:
    """xnntrace_to_kernels' columns. From a kernel log (`microkernels`: kind, microkernel, count
    as `kit.trace.kernels.parse_kernel_log` gives them) the rows are the kit's own. Without one,
    one row per delegated operator type: what its XNNPACK name says (the algorithm, the dtype tag,
    SME2 when the tag is one only SME2 CPUs get), `count` its instances per iteration, and null
    where only the log knows (the microkernel name, variant, tile shape, ISA chain)."""
    if microkernels is not None and not microkernels.empty:
        rows = []
        for r in microkernels.itertuples(index=False):
            base, _, arch = r.microkernel.partition("__")
            parts = base.split("_")
            uk = parts.index("ukernel") if "ukernel" in parts else -1
            rows.append(
                {
                    "model_id": model_id,
                    "kernel_name": r.microkernel,
                    "category": r.kind,
                    "count": int(r.count),
                    "dtype": parts[1] if len(parts) > 2 else None,
                    "xnn_op": parts[2] if len(parts) > 2 else None,
                    "variant": parts[3] if uk - 1 >= 3 else None,
                    "ukernel_shape": parts[uk + 1] if 0 <= uk < len(parts) - 1 else None,
                    "arch_chain": arch or None,
                    "has_sme": int("sme" in arch.lower()),
                    "has_sme2": int("sme2" in arch.lower()),
                }
            )
        return pd.DataFrame(rows, columns=KERNELS_COLUMNS)
    rows = []
    for r in op_stats[op_stats.delegated.astype(bool)].itertuples(index=False):
        tags = [t for t in kernel_names.dtype_tags(r.op_type) if t not in _LAYOUTS]
        algo = _XNN_ALGO.search(r.op_type)
        sme2 = kernel_names.family(r.op_type) == "kleidiai-sme2"
        rows.append(
            {
                "model_id": model_id,
                "kernel_name": None,
                "category": algo.group(1).lower() if algo else None,
                "count": int(r.instances),
                "dtype": tags[0].lower() if tags else None,
                "xnn_op": algo.group(1).lower() if algo else None,
                "variant": None,
                "ukernel_shape": None,
                "arch_chain": None,
                # PF32/PQS8 kernels exist only for SME2 CPUs; any other name proves nothing either way.
                "has_sme": 1 if sme2 else None,
                "has_sme2": 1 if sme2 else None,
                "op_type": r.op_type,
            }
        )
    return pd.DataFrame(rows, columns=[*KERNELS_COLUMNS, "op_type"])


def comparison(cats_b: pd.DataFrame, cats_a: pd.DataFrame, name_b: str, name_a: str) -> pd.DataFrame:
    """analyze_etdump_csv --compare: `--timeline-csv` is run B (the candidate, e.g. SME2 on) and
    `--compare` run A (the baseline), so its `speedup` (second / first) is A / B, > 1 when B is
    faster. Inputs are `category_summary` tables; categories sorted by name as the kit sorts them."""
    a, b = cats_a.set_index("category"), cats_b.set_index("category")
    rows = []
    for c in sorted(set(a.index) | set(b.index)):
        tb = float(b.avg_ms.get(c, 0.0))
        ta = float(a.avg_ms.get(c, 0.0))
        rows.append(
            {
                "category": c,
                f"{name_b}_ms": tb,
                f"{name_a}_ms": ta,
                "speedup": ta / tb if tb > 0 else 0.0,
                f"{name_b}_pct": float(b.pct_of_e2e.get(c, 0.0)),
                f"{name_a}_pct": float(a.pct_of_e2e.get(c, 0.0)),
            }
        )
    return pd.DataFrame(
        rows, columns=["category", f"{name_b}_ms", f"{name_a}_ms", "speedup", f"{name_b}_pct", f"{name_a}_pct"]
    )


def robust_comparison(stats_a: dict, stats_b: dict, name_a: str, name_b: str) -> dict:
    """robust_latency_analysis --compare with A as config1 (baseline) and B as config2: speedups
    A / B of the outlier-free median and of the 5% trimmed mean, and which config varies more."""
    m1, m2 = stats_a["robust_stats"]["median_ms"], stats_b["robust_stats"]["median_ms"]
    t1, t2 = stats_a["trimmed_mean_5_ms"], stats_b["trimmed_mean_5_ms"]
    s_med = m1 / m2 if m2 > 0 else 0.0
    s_trim = t1 / t2 if t2 > 0 else 0.0
    cv1, cv2 = stats_a["robust_stats"]["cv_percent"], stats_b["robust_stats"]["cv_percent"]
    if s_med > 1:
        desc = f"{name_b} is {s_med:.2f}x faster than {name_a}"
    elif s_med > 0:
        desc = f"{name_a} is {1 / s_med:.2f}x faster than {name_b}"
    else:
        desc = "no comparison possible (a median of 0)"
    return {
        "config1": {
            "name": name_a,
            "median_ms": m1,
            "trimmed_mean_ms": t1,
            "cv_percent": cv1,
            "count": stats_a["count"],
        },
        "config2": {
            "name": name_b,
            "median_ms": m2,
            "trimmed_mean_ms": t2,
            "cv_percent": cv2,
            "count": stats_b["count"],
        },
        "speedup": {"median_based": s_med, "trimmed_mean_based": s_trim, "description": desc},
        "variability": {
            "config1_cv": cv1,
            "config2_cv": cv2,
            "more_variable": name_a if cv1 > cv2 else name_b,
            "cv_ratio": cv1 / cv2 if cv2 > 0 else 0.0,
        },
    }


def kernel_view(ops_b: pd.DataFrame, ops_a: pd.DataFrame, name_b: str, name_a: str, title: str) -> str:
    """generate_kernel_view's Markdown (GEMM/IGEMM filter) from two `kernels` tables. Without
    kernel logs the rows are the XNNPACK operator names (what our traces name), so the table says
    which GEMM/IGEMM operator types each run used; `Architecture` is SME2 only when the name proves it."""

    def names(k: pd.DataFrame) -> dict[str, str]:
        col = "kernel_name" if k.kernel_name.notna().any() else "op_type"
        out = {}
        for r in k.itertuples(index=False):
            name = getattr(r, col)
            if isinstance(name, str) and "gemm" in name.lower():
                out[name] = "SME2" if r.has_sme2 == 1 else _arch(name)
        return out

    on, off = names(ops_b), names(ops_a)
    rows = sorted(set(on) | set(off))
    from_logs = bool(ops_b.kernel_name.notna().any() or ops_a.kernel_name.notna().any())
    parts = [f"#### **{title}**\n\n"]
    if not from_logs:
        parts.append(
            "_Names are XNNPACK operator types from the ETDump: microkernel names need a kernel-log runner "
            "(`-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5`). Architecture is SME2 only where the packed dtype tag "
            "(PF32, PQS8) proves it, else Other._\n\n"
        )
    if not rows:
        parts.append("No kernels found matching the filter criteria.\n")
        return "".join(parts)
    lines = [
        f"| Kernel Name | {name_b} | {name_a} | Architecture | Delegation |",
        "|-------------|----------|----------|-------------|------------|",
    ]
    for k in rows:
        b = "✅ **Present**" if k in on else "❌ **Absent**"
        a = "✅ **Present**" if k in off else "❌ **Absent**"
        lines.append(f"| `{k}` | {b} | {a} | {on.get(k) or off.get(k)} | XNNPACK Delegated |")
    parts.append("\n".join(lines) + "\n")
    return "".join(parts)


def _arch(name: str) -> str:
    """generate_kernel_view's determine_architecture on a microkernel name (Other for op names)."""
    low = name.lower()
    if "sme2" in low:
        return "SME2"
    if "sme" in low:
        return "SME"
    if "neon" in low or "aarch64" in low:
        return "NEON"
    return "Other"
