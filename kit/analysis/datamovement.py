"""Data-movement analysis of one run: how much time goes to transposes and other layout, copy and
convert operators, where they sit (inside a delegate, at its boundary, next to a non-delegated
operator) and which nn.Modules cause them; plus delegation health (delegated vs portable operators,
delegate partitions, quantize/dequantize overhead).

The case study's finding in these terms: SME2 makes the convolutions fast, so transposes at the
edges of XNNPACK partitions (NCHW <-> NHWC around non-delegated normalizations) become the largest
cost. The report sentence this module produces: "N transposes, X ms, Y% of runtime, around these
modules: ..."."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kit.stats import categories
from kit.stats.summary import share
from kit.trace.modules import label
from kit.trace.program import ProgramMap

LAYOUT = ("Transpose", "aten::permute_copy", "aten::transpose_copy")
QUANT = ("quantize", "dequantize", "Convert")


@dataclass
class DataMovement:
    execute_ms: float
    summary: pd.DataFrame  # op_type, fine, per-iteration count, median ms, share
    transposes: dict  # count, ms, share
    positions: pd.DataFrame  # one row per data-movement event of iteration 0
    hotspots: pd.DataFrame  # module (cause) -> count, ms, share
    health: dict
    sentence: str = ""
    notes: list[str] = field(default_factory=list)


def _position(seq_in_call: int, n_in_call: int) -> str:
    if n_in_call <= 1:
        return "sole op of its delegate"
    if seq_in_call == 0:
        return "delegate entry"
    if seq_in_call == n_in_call - 1:
        return "delegate exit"
    return "inside delegate"


def analyze(rows: pd.DataFrame, program: ProgramMap | None, rules=None, measure: str = "duration_ms") -> DataMovement:
    """rows: a Trace's rows (all kinds). program: the run's program map (modules, op types).
    `measure`: the column to sum, duration_ms by default; a counted run's count table (kit.counts)
    with measure="est_cycles" gives the same analysis in estimated cycles (every "ms" field then
    holds estimated cycles)."""
    rules = rules or categories.load_rules()
    if measure != "duration_ms":
        rows = rows.assign(duration_ms=rows[measure].astype(float))
    ops = categories.label(rows[rows.row_kind == "operator"], rules)
    iters = int(ops.iteration.nunique()) or 1
    execute = rows.loc[rows.row_kind == "method", "duration_ms"]
    execute_ms = float(np.median(execute)) if len(execute) else float("nan")
    dm = ops[ops.category == "Data Movement"]

    per_iter = dm.groupby(["op_type", "iteration"]).duration_ms.sum().unstack(fill_value=0.0)
    summary = pd.DataFrame(
        {
            "op_type": per_iter.index,
            "fine_category": [dm[dm.op_type == o].fine_category.iloc[0] for o in per_iter.index],
            "delegated": [bool(dm[dm.op_type == o].delegated.iloc[0]) for o in per_iter.index],
            "per_iteration": [
                int((dm[(dm.op_type == o) & (dm.iteration == dm.iteration.min())]).shape[0]) for o in per_iter.index
            ],
            "median_ms": per_iter.median(axis=1).to_numpy() if len(per_iter) else [],
        }
    ).sort_values("median_ms", ascending=False, ignore_index=True)
    summary["share_of_execute"] = share(summary.median_ms, execute_ms)

    is_t = dm.op_type.str.startswith(LAYOUT)
    t_ms = float(dm[is_t].groupby("iteration").duration_ms.sum().median()) if is_t.any() else 0.0
    transposes = {
        "count": int(is_t.sum() / iters),
        "ms": t_ms,
        "share": share(t_ms, execute_ms),
    }

    instr = {i.index: i for i in program.instructions} if program else {}
    first = ops[ops.iteration == ops.iteration.min()].copy()
    first["n_in_call"] = first.groupby("instruction_id").seq.transform("count")
    first["pos_in_call"] = first.groupby("instruction_id").cumcount()
    kernel_idx = sorted(i for i, ins in instr.items() if ins.kind == "kernel")
    pos_rows = []
    for r in first[first.category == "Data Movement"].itertuples():
        position = _position(r.pos_in_call, r.n_in_call) if r.delegated else "portable operator"
        cause, neighbour = _cause(r.instruction_id, r.pos_in_call, r.n_in_call, bool(r.delegated), instr, kernel_idx)
        ms = float(dm[(dm.instruction_id == r.instruction_id) & (dm.seq == r.seq)].duration_ms.median())
        pos_rows.append(
            {
                "instruction_id": r.instruction_id,
                "seq": r.seq,
                "op_type": r.op_type,
                "position": position,
                "next_to_portable": neighbour,
                "module": cause,
                "median_ms": ms,
            }
        )
    positions = pd.DataFrame(
        pos_rows, columns=["instruction_id", "seq", "op_type", "position", "next_to_portable", "module", "median_ms"]
    )
    hot = (
        positions.groupby("module")
        .agg(count=("op_type", "size"), ms=("median_ms", "sum"))
        .reset_index()
        .sort_values("ms", ascending=False, ignore_index=True)
    )
    hot["share_of_execute"] = share(hot.ms, execute_ms)

    traced = [i for i in instr.values() if i.kind in ("kernel", "delegate")]
    q = ops[ops.op_type.str.contains("|".join(QUANT), case=False)]
    q_ms = float(q.groupby("iteration").duration_ms.sum().median()) if len(q) else 0.0
    health = {
        "delegated_ops": int(first.delegated.sum()),
        "portable_ops": int((~first.delegated).sum()),
        "delegate_partitions": sum(1 for i in traced if i.kind == "delegate")
        if instr
        else int(rows[rows.row_kind == "delegate_call"].instruction_id.nunique()),
        "portable_kernels": sorted({i.name for i in traced if i.kind == "kernel"}),
        "quant_ms": q_ms,
        "quant_share": share(q_ms, execute_ms),
        "data_movement_ms": float(dm.groupby("iteration").duration_ms.sum().median()) if len(dm) else 0.0,
    }
    health["data_movement_share"] = share(health["data_movement_ms"], execute_ms)
    top = [m for m in hot.module.head(4) if m]
    sentence = (
        f"{transposes['count']} transposes, {transposes['ms']:.3f} ms, {100 * transposes['share']:.1f}% of runtime"
        + (f", around these modules: {', '.join(top)}" if top else "")
    )
    return DataMovement(execute_ms, summary, transposes, positions, hot, health, sentence)


def _cause(instr_id: int, pos: int, n: int, delegated: bool, instr: dict, kernel_idx: list[int]) -> tuple[str, str]:
    """The module a data-movement op is attributed to, and the portable op next to it (if any).

    A transpose at a delegate's entry or exit exists because of the graph break next to it: blame
    the non-delegated neighbour (e.g. a LayerNorm). Otherwise blame the delegate's own modules."""
    if not instr:
        return "", ""
    ins = instr.get(instr_id)
    if ins is None:
        return "", ""
    if not delegated:
        return label(ins), ins.name
    neighbour = None
    if pos == 0 and instr_id - 1 in instr and instr[instr_id - 1].kind == "kernel":
        neighbour = instr[instr_id - 1]
    elif pos == n - 1 and instr_id + 1 in instr and instr[instr_id + 1].kind == "kernel":
        neighbour = instr[instr_id + 1]
    if neighbour is not None:
        return label(neighbour), neighbour.name
    return label(ins, pos / max(n - 1, 1)), ""


def diff(a: DataMovement, b: DataMovement) -> dict:
    """How data movement and delegation changed from run a to run b."""
    return {
        "transposes": (a.transposes["count"], b.transposes["count"]),
        "transpose_ms": (a.transposes["ms"], b.transposes["ms"]),
        "data_movement_share": (a.health["data_movement_share"], b.health["data_movement_share"]),
        "delegate_partitions": (a.health["delegate_partitions"], b.health["delegate_partitions"]),
        "portable_ops": (a.health["portable_ops"], b.health["portable_ops"]),
        "new_portable_kernels": sorted(set(b.health["portable_kernels"]) - set(a.health["portable_kernels"])),
        "gone_portable_kernels": sorted(set(a.health["portable_kernels"]) - set(b.health["portable_kernels"])),
    }
