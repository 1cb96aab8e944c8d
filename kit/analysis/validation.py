"""The validation gates, as pure functions returning a Gate (passed, message, metadata). The Dagster
asset checks and the CLI call the same functions.

Also the checks of run parameters (thread counts, iterations, timeouts) that the CLI, a profile
plan and every run request apply, so a nonsensical value is refused before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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


def stats(op_stats: pd.DataFrame, e2e: dict, iterations: int, cv_bound: float) -> Gate:
    """Every operator has a statistic over every iteration, and end-to-end CV is under the bound."""
    complete = bool(len(op_stats) and (op_stats["count"] == iterations).all() and op_stats["median_ms"].notna().all())
    cv = float(e2e.get("cv_percent", float("nan")))
    ok = complete and cv <= cv_bound
    msg = f"{len(op_stats)} operators, e2e CV {cv:.1f}% (bound {cv_bound}%)" + (
        "" if complete else "; incomplete operator statistics"
    )
    return Gate(ok, msg, {"operators": len(op_stats), "e2e_cv_percent": cv, "cv_bound": cv_bound})


def categories(per_iteration: pd.DataFrame) -> Gate:
    """Each scheme's category totals add up to the operator total, iteration by iteration."""
    worst = 0.0
    for scheme in ("blog", "fine"):
        cols = [c for c in per_iteration.columns if c.startswith(f"{scheme}:")]
        worst = max(worst, float(np.max(np.abs(per_iteration[cols].sum(axis=1) - per_iteration["operators_ms"]))))
    return Gate(
        worst <= 1e-6,
        f"largest gap between category sum and operator total: {worst:.2e} ms",
        {"max_gap_ms": worst},
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
