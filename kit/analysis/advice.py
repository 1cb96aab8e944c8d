"""Bottlenecks and recommendations derived from a run's numbers, never written by hand.

The facts of one run (its category shares, data-movement analysis, portable operators, kernels,
noise, and its SME2 comparison when there is one) go through a fixed set of rules; each rule
that fires says what it saw, with the numbers, and what to do. The case study's finding comes out
of the data-movement rule: "Data Movement is 41% of runtime with SME2 on; 85% of it is transposes,
mostly around <module> (GroupNorm): fuse or move the norm ...". Thresholds are module constants."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd

from kit.analysis.compare import Comparison
from kit.analysis.datamovement import LAYOUT, DataMovement
from kit.trace import kernels

# A category or operator is worth a recommendation above these shares of Method::execute.
DATA_MOVEMENT_SHARE = 0.10
PORTABLE_OP_SHARE = 0.05
OTHER_SHARE = 0.15
QUANT_SHARE = 0.05
# SME2 should speed GEMMs and convolutions up by more than this (hardware only).
MIN_COMPUTE_SPEEDUP = 1.5
COMPUTE_SHARE = 0.10  # ... when they are at least this share of the SME2-off runtime
NOISY_CV_PERCENT = 10.0
MIN_COVERAGE = 0.80
NORMS = re.compile(r"(Group|Layer|Batch|Instance|RMS)Norm|norm", re.I)


@dataclass
class Facts:
    """What the rules read about one run."""

    run_id: str
    target: str
    dtype: str
    sme2: bool
    emulated: bool
    e2e_median_ms: float
    e2e_cv_percent: float
    coverage: float
    shares: dict[str, float]  # blog category -> median share of Method::execute
    op_stats: pd.DataFrame  # op_type, category, delegated, instances, median_ms, share_of_execute
    dm: DataMovement
    comparison: Comparison | None = None  # this run as run B (e.g. SME2 on) against its baseline


@dataclass
class Finding:
    rule: str
    weight: float  # the share of runtime it concerns: findings are listed heaviest first
    text: str
    evidence: dict = field(default_factory=dict)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%" if x >= 0.01 else f"{100 * x:.1f}%"


def _context(f: Facts) -> str:
    where = " with SME2 on" if f.sme2 else (" with SME2 off" if f.comparison is not None else "")
    return where + (" (emulated: shares are indicative, times are not hardware times)" if f.emulated else "")


def data_movement(f: Facts) -> Finding | None:
    """Data Movement above its threshold (or the largest category): how much of it is transposes,
    and which portable operators they surround (the graph breaks that cause them)."""
    share = f.shares.get("Data Movement", 0.0)
    largest = max(f.shares, key=f.shares.get) if f.shares else ""
    if share < DATA_MOVEMENT_SHARE and largest != "Data Movement":
        return None
    dm_ms = f.dm.health["data_movement_ms"]
    t = f.dm.transposes
    t_frac = t["ms"] / dm_ms if dm_ms > 0 else 0.0
    # Transposes at a delegate's edge next to a portable operator exist because of that operator.
    pos = f.dm.positions
    edge = pos[
        (pos.next_to_portable != "") & (pos.position != "portable operator") & pos.op_type.str.startswith(LAYOUT)
    ]
    causes = (
        edge.groupby(["next_to_portable", "module"]).median_ms.sum().sort_values(ascending=False).reset_index()
        if len(edge)
        else pd.DataFrame(columns=["next_to_portable", "module", "median_ms"])
    )
    edge_frac = float(causes.median_ms.sum()) / t["ms"] if t["ms"] > 0 else 0.0
    hot = [m for m in f.dm.hotspots.module.head(3) if m]
    named = [f"{r.next_to_portable} in {r.module}" for r in causes.head(3).itertuples()]
    norms = [n for n in named if NORMS.search(n)]
    if norms:
        action = (
            f"fuse or move the norm ({'; '.join(norms)}): it is not delegated to XNNPACK, so the tensor changes "
            "layout (NCHW <-> NHWC) on both sides of it; or replace it with an operator XNNPACK takes"
        )
    elif named:
        action = f"delegate or remove the portable operators the transposes surround ({'; '.join(named)})"
    elif hot:
        action = (
            "keep one memory layout across these modules so fewer permutes and copies sit between delegated operators"
        )
    else:
        action = "look at the transposes' positions (sme2 datamovement RUN) to see which graph breaks cause them"
    text = (
        f"Data Movement is {_pct(share)} of runtime{_context(f)} ({dm_ms:.3f} ms per inference"
        + (", the largest category" if largest == "Data Movement" else "")
        + f"); {_pct(t_frac)} of it is {t['count']} transposes"
        + (f", mostly around {', '.join(hot)}" if hot else "")
        + (f"; {_pct(edge_frac)} of the transpose time is at the edges of portable operators" if named else "")
        + f": {action}."
    )
    return Finding(
        "data-movement",
        share,
        text,
        {
            "share": share,
            "transpose_fraction": t_frac,
            "edge_fraction": edge_frac,
            "transposes": t["count"],
            "modules": hot,
            "portable_neighbours": named,
        },
    )


def portable_operators(f: Facts) -> list[Finding]:
    out = []
    ops = f.op_stats[~f.op_stats.delegated.astype(bool)]
    for r in ops[ops.share_of_execute >= PORTABLE_OP_SHARE].itertuples():
        if NORMS.search(r.op_type):
            hint = "decompose or replace the norm so XNNPACK can take it (or fold it into the neighbouring convolution)"
        elif re.search(r"copy|expand|squeeze|view|clone", r.op_type):
            hint = "remove the copy from the model (reshape/expand in place) or express it so XNNPACK delegates it"
        else:
            hint = "check why XNNPACK does not take it (sme2 export lists the non-delegated operators)"
        out.append(
            Finding(
                "portable",
                float(r.share_of_execute),
                f"{r.op_type} runs outside XNNPACK (portable kernel, {r.instances} instance(s)) and takes "
                f"{_pct(r.share_of_execute)} of runtime{_context(f)}: {hint}.",
                {"op_type": r.op_type, "share": float(r.share_of_execute)},
            )
        )
    return out


def sme2_kernels(f: Facts) -> Finding | None:
    """An SME2-on run whose fp32/int8 GEMMs and convolutions use no SME2-only (PF32, PQS8) kernel."""
    if not f.sme2 or f.dtype not in ("fp32", "int8"):
        return None
    compute = f.op_stats[f.op_stats.category.isin(["Convolution", "GEMM"]) & f.op_stats.delegated.astype(bool)]
    if compute.empty:
        return None
    fams = compute.op_type.map(kernels.family)
    if (fams == "kleidiai-sme2").any():
        return None
    share = float(compute.share_of_execute.sum())
    return Finding(
        "sme2-kernels",
        max(share, 0.5),
        f"The SME2-on run used no SME2 kernel for its {len(compute)} GEMM/convolution operator types "
        f"({_pct(share)} of runtime): check that the runner was built with XNNPACK_ENABLE_ARM_SME2=ON and that "
        f"{f.target.split('.')[0]} has SME2 (sme2 devices).",
        {"operators": compute.op_type.tolist()},
    )


def low_speedup(f: Facts) -> list[Finding]:
    c = f.comparison
    if c is None or c.emulated or not c.sme2_pair:
        return []
    out = []
    for r in c.categories[c.categories.category.isin(["Convolution", "GEMM"])].itertuples():
        if r.share_a >= COMPUTE_SHARE and r.speedup == r.speedup and r.speedup < MIN_COMPUTE_SPEEDUP:
            out.append(
                Finding(
                    "low-speedup",
                    float(r.share_a),
                    f"{r.category} speeds up only {r.speedup:.2f}x with SME2 ({r.a_ms:.3f} -> {r.b_ms:.3f} ms, "
                    f"{_pct(r.share_a)} of the SME2-off runtime; kernels {r.kernels_a} -> {r.kernels_b}): check the "
                    "dtype (PF16 and QP8 kernels are not SME2-only) and the shapes (small GEMMs gain little).",
                    {"category": r.category, "speedup": float(r.speedup)},
                )
            )
    return out


def other_category(f: Facts) -> Finding | None:
    share = f.shares.get("Other", 0.0)
    if share < OTHER_SHARE:
        return None
    top = f.op_stats[f.op_stats.category == "Other"].sort_values("median_ms", ascending=False).head(3)
    names = ", ".join(f"{r.op_type} ({_pct(r.share_of_execute)})" for r in top.itertuples())
    return Finding(
        "other",
        share,
        f"Other (norms, pooling, resize, softmax, ...) is {_pct(share)} of runtime{_context(f)}: {names}. "
        "Those that are portable are the first to delegate or replace.",
        {"share": share, "operators": top.op_type.tolist()},
    )


def quantization(f: Facts) -> Finding | None:
    share = f.dm.health["quant_share"]
    if not share == share or share < QUANT_SHARE:
        return None
    return Finding(
        "quant",
        share,
        f"Quantize/dequantize/convert operators take {_pct(share)} of runtime{_context(f)} "
        f"({f.dm.health['quant_ms']:.3f} ms): keep neighbouring operators in int8 so fewer conversions sit "
        "between them (quantize the ops between two quantized ones too).",
        {"share": share},
    )


def noise(f: Facts) -> Finding | None:
    if not f.e2e_cv_percent == f.e2e_cv_percent or f.e2e_cv_percent <= NOISY_CV_PERCENT:
        return None
    return Finding(
        "noise",
        0.0,
        f"End-to-end times vary by {f.e2e_cv_percent:.0f}% (CV): pin the run to a core (devices.toml "
        "affinity), raise --iterations, and keep the device idle and cool before comparing small differences.",
        {"cv_percent": f.e2e_cv_percent},
    )


def coverage(f: Facts) -> Finding | None:
    if not f.coverage == f.coverage or f.coverage >= MIN_COVERAGE:
        return None
    return Finding(
        "coverage",
        1.0 - f.coverage,
        f"Operators explain only {_pct(f.coverage)} of Method::execute: the rest is runtime overhead "
        "(delegate calls, memory planning, copies of inputs and outputs), which grows in importance as "
        "operators get faster.",
        {"coverage": f.coverage},
    )


def recommend(f: Facts) -> list[Finding]:
    """Every rule's findings for one run, heaviest first."""
    found: list[Finding] = []
    for rule in (data_movement, sme2_kernels, other_category, quantization, noise, coverage):
        hit = rule(f)
        if hit is not None:
            found.append(hit)
    found += portable_operators(f) + low_speedup(f)
    return sorted(found, key=lambda x: x.weight, reverse=True)


def bottlenecks(f: Facts, top: int = 5) -> pd.DataFrame:
    """The operators above PORTABLE_OP_SHARE of runtime (at least the top few), slowest first."""
    ops = f.op_stats.sort_values("median_ms", ascending=False)
    keep = ops[(ops.share_of_execute >= PORTABLE_OP_SHARE)]
    if len(keep) < top:
        keep = ops.head(top)
    out = keep[["op_type", "category", "delegated", "instances", "median_ms", "share_of_execute"]].copy()
    out["share_of_execute"] = (100 * out.share_of_execute).round(1)
    return out.rename(columns={"share_of_execute": "% of execute"}).reset_index(drop=True)
