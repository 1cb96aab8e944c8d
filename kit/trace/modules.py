"""Which nn.Module each operator event belongs to, from the program map (the ETRecord's debug
handles and each node's nn_module_stack, recorded at export).

A portable operator is its instruction's module. XNNPACK's operators carry no debug handle of
their own (ExecuTorch logs them with id -1), so an operator inside a delegate call is given the
module at the same relative position in the delegate's module list as the event in its operator
sequence: both follow program order (a heuristic, exact for a delegate of one module).

`inspector_total` is ExecuTorch Inspector's `find_total_for_module` on the same trace, for
cross-checks: it adds the mean time of every kernel call and every whole delegate call whose
module path contains the name (so a delegate call counts in full for each module it touches, and
the same time can count for several modules); `module` here attributes each operator once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kit.trace.etdump import read_profile_events
from kit.trace.program import Instruction, ProgramMap


def label(ins: Instruction, where: float = 0.0) -> str:
    """A module of the instruction: for a delegate, the one at relative position `where` (0..1) of
    its module list; "path (Class)" when the class is known."""
    if not ins.modules:
        return ins.name
    i = min(len(ins.modules) - 1, int(round(where * (len(ins.modules) - 1))))
    return f"{ins.modules[i]} ({ins.module_types[i]})" if i < len(ins.module_types) else ins.modules[i]


def event_modules(rows: pd.DataFrame, program: ProgramMap | None) -> np.ndarray:
    """The module of every row of a Trace's rows ("" where unknown: no program map, Method::execute,
    a delegate call as a whole)."""
    out = np.full(len(rows), "", dtype=object)
    if program is None or rows.empty:
        return out
    instr = {i.index: i for i in program.instructions}
    ops = (rows.row_kind == "operator").to_numpy()
    frame = rows.reset_index(drop=True)
    # Position of each delegated operator in its delegate call (per iteration and instruction).
    delegated = frame[ops & frame.delegated.to_numpy()]
    pos = delegated.groupby(["iteration", "instruction_id"]).cumcount()
    n = delegated.groupby(["iteration", "instruction_id"]).seq.transform("count")
    for i, p, total in zip(delegated.index, pos, n):
        ins = instr.get(int(frame.instruction_id[i]))
        if ins is not None:
            out[i] = label(ins, p / max(total - 1, 1))
    for i in frame.index[ops & ~frame.delegated.to_numpy()]:
        ins = instr.get(int(frame.instruction_id[i]))
        if ins is not None:
            out[i] = label(ins)
    return out


def inspector_total(etdump_path, program: ProgramMap, module: str) -> float:
    """Inspector's find_total_for_module(module) for this trace: the sum, over kernel calls
    (native_call_*) and delegate calls whose instruction has a module path containing `module`, of
    each event's mean duration in ms over every execution in the file (warmups included, as
    Inspector reads it)."""
    ev = read_profile_events(etdump_path)
    names = ev.names
    instr = {i.index: i for i in program.instructions}
    keys: dict[tuple[str, int], list[float]] = {}
    for name_code, iid, start, end in zip(ev.name, ev.instruction_id, ev.start_time, ev.end_time):
        name = names[name_code]
        if name is None or not (name.startswith("native_call_") or name == "DELEGATE_CALL"):
            continue
        ins = instr.get(int(iid))
        if ins is None or not any(module in m for m in ins.modules):
            continue
        keys.setdefault((name, int(iid)), []).append((int(end) - int(start)) / 1e6)
    return float(sum(np.mean(v) for v in keys.values()))
