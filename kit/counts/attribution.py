"""Instruction counts per ETDump event: the plugin's clock reads matched to the trace's timestamps.

Every timestamp ExecuTorch records is a clock read of the program (its PAL tick is the monotonic
clock minus the clock at start-up), so an event's instructions are the counters at its end read
minus those at its start read. The offset between the two clocks is found, not assumed: the one
that makes every recorded timestamp a clock read of the same vCPU.

XNNPACK's operators inside a DELEGATE_CALL are different: ExecuTorch logs them with made-up start
times (the profiler's start plus the sum of earlier operators' microsecond durations). XNNPACK
reads the clock after each operator, so inside the delegate call's window the operator ends are
consecutive reads whose gaps, cut to whole microseconds, are exactly the recorded durations; the
search below finds that run of reads, and an operator's counts run from the read before its end."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kit.core.errors import TraceError
from kit.counts.plugin_log import CLASSES, MEMORY_CLASSES, SME_CLASSES, VECTOR_CLASSES, ClockLog
from kit.trace.etdump import Trace

STREAMING = [f"streaming_{c}" for c in CLASSES]
COUNT_COLUMNS = [*CLASSES, *STREAMING, "bytes_loaded", "bytes_stored"]
SUMMARY_COLUMNS = [
    "instructions",
    "sme_instructions",
    "simd_instructions",
    "scalar_instructions",
    "memory_instructions",
]
KEY_COLUMNS = ["iteration", "seq", "row_kind", "op_type", "event_name", "delegated", "instruction_id"]


@dataclass
class Attribution:
    events: pd.DataFrame  # KEY_COLUMNS + COUNT_COLUMNS + SUMMARY_COLUMNS, one row per trace row
    checks: dict  # how well the events add up (see `checks`)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """The summary columns from the class columns: instructions; SME (everything retired in
    streaming mode, plus SME instructions outside it); SIMD (SVE and Advanced SIMD outside streaming
    mode); scalar (the rest: integer, FP, loads/stores of scalars, branches, system); memory (every
    load/store class). sme + simd + scalar == instructions."""
    out = df.copy()
    total = sum(out[c] for c in CLASSES)
    streaming = sum(out[f"streaming_{c}"] for c in CLASSES)
    sme = streaming + sum(out[c] - out[f"streaming_{c}"] for c in SME_CLASSES)
    simd = sum(out[c] - out[f"streaming_{c}"] for c in VECTOR_CLASSES)
    out["instructions"] = total
    out["sme_instructions"] = sme
    out["simd_instructions"] = simd
    out["scalar_instructions"] = total - sme - simd
    out["memory_instructions"] = sum(out[c] for c in MEMORY_CLASSES)
    return out


def _offset(exact: np.ndarray, reads: np.ndarray) -> int | None:
    """The clock offset that makes the most trace timestamps reads (None: none fits them all)."""
    if not len(exact) or not len(reads):
        return None
    probe = np.unique(exact)[:16]
    candidates = reads - probe[0]
    values = candidates[:, None] + probe[None, :]
    at = np.clip(np.searchsorted(reads, values), 0, len(reads) - 1)
    hits = (reads[at] == values).sum(axis=1)
    best = int(np.argmax(hits))
    if hits[best] < len(probe):
        return None
    off = int(candidates[best])
    at = np.clip(np.searchsorted(reads, exact + off), 0, len(reads) - 1)
    return off if bool((reads[at] == exact + off).all()) else None


MAX_READS_PER_OPERATOR = 8  # an XNNPACK node of several operator objects reads the clock after each


def _delegate_ends(window_ns: np.ndarray, durations_us: np.ndarray) -> np.ndarray | None:
    """Positions in `window_ns` of [start, end of operator 0, ..., end of operator N-1]: reads whose
    gaps, in whole microseconds, are the recorded durations. An operator may span several reads (a
    node of several operator objects); the last operator ends at the window's last read or earlier.
    A depth-first search from the end, nearest reads first, backtracking on a mismatch."""
    n, r = len(durations_us), window_ns
    if n == 0 or len(r) < n + 1:
        return None

    # XNNPACK sums a node's per-object times, each cut to whole microseconds; a span of reads
    # matches when either its whole length or that sum, in microseconds, is the recorded duration.
    floored = np.concatenate([[0], np.cumsum(np.diff(r) // 1000)])

    def earlier(i: int, e: int) -> list[int]:
        """Candidate ends of operator i - 1 (or XNNPACK's start read, i == 0) for operator i ending at e."""
        out = []
        for p in range(e - 1, max(e - 1 - MAX_READS_PER_OPERATOR, -1), -1):
            whole, summed = (r[e] - r[p]) // 1000, floored[e] - floored[p]
            if durations_us[i] in (whole, summed):
                out.append(p)
            elif summed > durations_us[i]:
                break
        return out

    for last in range(len(r) - 1, n - 1, -1):
        path = [last]  # ends from operator N-1 down; then the start
        stack = [earlier(n - 1, last)]
        while stack:
            if not stack[-1]:
                stack.pop()
                path.pop()
                continue
            p = stack[-1].pop(0)
            path.append(p)
            i = n - len(path)  # the operator whose end is p, or -1: p is the start
            if i < 0:
                return np.array(path[::-1])
            stack.append(earlier(i, p))
    return None


def attribute(trace: Trace, log: ClockLog) -> Attribution:
    """Counts for every row of `trace` (the ETDump run the counting QEMU executed)."""
    if trace.start_ticks is None:
        raise TraceError("this trace carries no raw timestamps", "read it with kit.trace.etdump.ingest")
    rows = trace.rows.reset_index(drop=True)
    start = trace.start_ticks.astype(np.int64)
    end = trace.end_ticks.astype(np.int64)
    synthetic = (rows.row_kind == "operator").to_numpy() & rows.delegated.to_numpy()
    exact = np.concatenate([start[~synthetic], end[~synthetic]])

    chosen = None
    for vcpu in sorted(log.totals):
        sub = log.of(vcpu)
        off = _offset(exact, sub.ns)
        if off is not None:
            chosen = (sub, off)
            break
    if chosen is None:
        raise TraceError(
            f"the instruction counts {log.source} do not match the trace {trace.source}: no vCPU read the clock at "
            "every recorded timestamp",
            "the counts and the ETDump must come from the same counting run; re-run it",
        )
    sub, off = chosen
    reads = sub.ns
    cum = np.concatenate([sub.counts, sub.streaming, sub.bytes], axis=1)
    values = np.full((len(rows), cum.shape[1]), -1, np.int64)

    i_start = np.searchsorted(reads, start + off)
    i_end = np.searchsorted(reads, end + off)
    values[~synthetic] = cum[i_end[~synthetic]] - cum[i_start[~synthetic]]

    unmatched = 0
    dcalls = np.flatnonzero((rows.row_kind == "delegate_call").to_numpy())
    iteration = rows.iteration.to_numpy()
    for d in dcalls:
        ops = np.flatnonzero(synthetic & (iteration == iteration[d]) & (start >= start[d]) & (start <= end[d]))
        if not len(ops):
            continue
        ops = ops[np.argsort(rows.seq.to_numpy()[ops], kind="stable")]
        lo, hi = i_start[d], i_end[d]
        window = reads[lo + 1 : hi]
        marks = _delegate_ends(window, (end[ops] - start[ops]) // 1000)
        if marks is None:
            unmatched += len(ops)
            continue
        at = lo + 1 + marks
        values[ops] = cum[at[1:]] - cum[at[:-1]]

    events = pd.concat([rows[KEY_COLUMNS], pd.DataFrame(values, columns=COUNT_COLUMNS)], axis=1)
    if unmatched:
        raise TraceError(
            f"{unmatched} XNNPACK operator event(s) of {trace.source} could not be matched to clock reads in "
            f"{log.source}",
            "the runner's XNNPACK must profile operators (the event tracer on); re-run the counting run",
        )
    events = summarize(events)
    return Attribution(events, checks(events, log, sub.vcpu[0] if len(sub.vcpu) else 0, off))


def checks(events: pd.DataFrame, log: ClockLog, vcpu: int, offset: int) -> dict:
    """How the counts add up, over the counted executions: the operators and delegate calls directly
    under Method::execute against Method::execute itself (the rest is the interpreter and the event
    tracer between them); every operator event against Method::execute; the XNNPACK operators
    against their delegate calls (the rest is the delegate's own per-call work: reshape, setup,
    copies); and whether every execution counted the same."""
    ev = events
    method = ev[ev.row_kind == "method"].set_index("iteration").instructions
    top = ev[(ev.row_kind == "delegate_call") | ((ev.row_kind == "operator") & ~ev.delegated)]
    top_sum = top.groupby("iteration").instructions.sum().reindex(method.index, fill_value=0)
    operators = ev[ev.row_kind == "operator"].instructions.sum()
    dops = ev[(ev.row_kind == "operator") & ev.delegated].groupby("iteration").instructions.sum()
    dcalls = ev[ev.row_kind == "delegate_call"].groupby("iteration").instructions.sum()
    per_iteration = [
        tuple(g.sort_values("seq")[COUNT_COLUMNS].to_numpy().ravel().tolist()) for _, g in ev.groupby("iteration")
    ]
    total = log.totals.get(vcpu, {}).get("counts", [])
    return {
        "vcpu": int(vcpu),
        "clock_offset_ns": int(offset),
        "iterations": int(ev.iteration.nunique()),
        "iterations_identical": len(set(per_iteration)) <= 1,
        "execute_instructions": [int(x) for x in method.tolist()],
        # Operators and delegate calls directly under Method::execute (the rest: interpreter, tracer)
        "top_level_share_of_execute": float(top_sum.sum() / method.sum()) if method.sum() else None,
        # Every operator event, XNNPACK's included (the rest adds the delegates' own work)
        "operators_share_of_execute": float(operators / method.sum()) if method.sum() else None,
        "delegate_operators_share": float(dops.sum() / dcalls.sum()) if dcalls.sum() else None,
        "run_instructions": int(sum(total)),
    }
