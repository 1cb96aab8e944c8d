"""The validation gates, as pure functions returning a Gate (passed, message, metadata). The Dagster
asset checks and the CLI call the same functions.

Also the checks of run parameters (thread counts, iterations, timeouts) that the CLI, a profile
plan and every run request apply, so a nonsensical value is refused before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from kit.core.atomic import sha256_file
from kit.trace import kernels

# More threads than any Arm CPU has cores (the largest servers have 192 per socket, phones 8-10):
# a count above this is a typo, not an experiment.


@dataclass
class Gate:
    passed: bool
    message: str
    metadata: dict = field(default_factory=dict)
    blocking: bool = False  # a failed blocking gate stops downstream work


def program(exp) -> Gate:
    """The .pte matches its meta (sha256) and passed the numerical check."""

    sha_ok = exp.pte.exists() and sha256_file(exp.pte) == exp.meta["pte_sha256"]
    check = exp.meta.get("numerical_check", {})
    ok = bool(sha_ok and check.get("passed"))
    msg = (
        "program matches its meta and the numerical check"
        if ok
        else (
            "sha256 differs from export_meta.json"
            if not sha_ok
            else f"numerical check failed ({check.get('max_rel_error')})"
        )
    )
    return Gate(
        ok,
        msg,
        {"max_rel_error": check.get("max_rel_error"), "tolerance": check.get("tolerance"), "sha256_ok": sha_ok},
        blocking=True,
    )


def etdump(trace_rows: pd.DataFrame, delegate_partitions: int) -> Gate:
    """The ETDump is non-empty and, when the program has delegates, holds their operator events."""
    ops = trace_rows[trace_rows.row_kind == "operator"]
    delegated = int(ops.delegated.sum())
    ok = len(ops) > 0 and (delegated > 0 or delegate_partitions == 0)
    return Gate(
        ok,
        f"{len(ops)} operator events, {delegated} inside delegates"
        if ok
        else "no delegate operator events in the ETDump",
        {"operator_events": len(ops), "delegate_events": delegated},
        blocking=True,
    )


def stats(op_stats: pd.DataFrame, e2e_cv_percent: float, iterations: int, cv_bound: float) -> Gate:
    """Every operator has a statistic over every iteration, and end-to-end CV is under the bound.
    `op_stats`: one run's operator rows (op_type, count, median_ms), as stored in the warehouse."""
    short = op_stats[(op_stats["count"] != iterations) | op_stats["median_ms"].isna()] if len(op_stats) else op_stats
    complete = bool(len(op_stats) and short.empty)
    cv = float("nan") if e2e_cv_percent is None else float(e2e_cv_percent)
    ok = complete and cv <= cv_bound
    msg = f"{len(op_stats)} operators over {iterations} iterations, e2e CV {cv:.1f}% (bound {cv_bound}%)" + (
        ""
        if complete
        else "; no operator statistics"
        if op_stats.empty
        else f"; incomplete operator statistics: {sorted(short.op_type)[:4]}"
    )
    return Gate(
        ok,
        msg,
        {
            "operators": len(op_stats),
            "incomplete": int(len(short)),
            "iterations": iterations,
            "e2e_cv_percent": cv,
            "cv_bound": cv_bound,
        },
    )


def categories(sums: pd.DataFrame, totals: pd.DataFrame, shown: pd.DataFrame | None = None) -> Gate:
    """In each scheme, the category sums add up to the operator total in every iteration, and the
    breakdown shown (category totals) is the median of those very sums.

    One run's rows: `sums` (scheme, category, iteration, ms) and `totals` (iteration, operators_ms)
    from its operator events; `shown` (scheme, category, median_ms) its category totals."""
    iterations = totals.set_index("iteration")["operators_ms"]
    worst, mismatched, checked = 0.0, [], {}
    for scheme in ("blog", "fine"):
        part = sums[sums.scheme == scheme]
        wide = part.pivot_table(index="iteration", columns="category", values="ms", aggfunc="sum", fill_value=0.0)
        wide = wide.reindex(iterations.index, fill_value=0.0)
        gap = (wide.sum(axis=1) - iterations).abs()
        worst = max(worst, float(gap.max()) if len(gap) else float("inf"))
        medians = wide.median(axis=0)
        checked[scheme] = {str(c): float(m) for c, m in medians.items()}
        if shown is not None:
            table = shown[shown.scheme == scheme].set_index("category")["median_ms"]
            if set(table.index) != set(medians.index):
                mismatched.append(f"{scheme}: shown {sorted(table.index)} vs events {sorted(medians.index)}")
            else:
                off = (table - medians.reindex(table.index)).abs() > 1e-9 * (1 + table.abs())
                mismatched += [f"{scheme}:{c}" for c in table.index[off]]
    ok = bool(len(iterations)) and worst <= 1e-6 and not mismatched
    msg = (
        f"{len(iterations)} iterations; largest gap between category sum and operator total: {worst:.2e} ms"
        if len(iterations)
        else "no operator events"
    )
    if shown is not None:
        msg += "; shown totals match the events" if not mismatched else f"; shown totals differ: {mismatched[:4]}"
    return Gate(
        ok,
        msg,
        {"max_gap_ms": worst, "iterations": len(iterations), "category_medians_ms": checked, "mismatched": mismatched},
        blocking=True,
    )


def sme2_kernels(op_stats: pd.DataFrame, sme2: bool, dtype: str) -> Gate:
    """An SME2-on run of an fp32 or int8 program must run its GEMMs and convolutions on SME2-only
    (KleidiAI PF32/PQS8) kernels; an SME2-off run must never."""
    compute = op_stats[op_stats.op_type.str.startswith(("Convolution", "Fully Connected"))]
    fams = [kernels.family(o) for o in compute.op_type]
    sme2_ops = [o for o, f in zip(compute.op_type, fams) if f == "kleidiai-sme2"]
    plain = [o for o, f in zip(compute.op_type, fams) if f != "kleidiai-sme2"]
    if dtype not in ("fp32", "int8") or compute.empty:
        return Gate(
            True, f"not applicable to {dtype} / no GEMM or convolution operators", {"compute_ops": len(compute)}
        )
    if sme2:
        ok = not plain
        return Gate(
            ok,
            "all GEMM/convolution operators use SME2-only kernels" if ok else f"SME2 on, but not SME2 kernels: {plain}",
            {"sme2_ops": sme2_ops, "plain_ops": plain},
        )
    ok = not sme2_ops
    return Gate(
        ok,
        "no SME2-only kernels with SME2 off" if ok else f"SME2 off, but SME2 kernels ran: {sme2_ops}",
        {"sme2_ops": sme2_ops},
    )
