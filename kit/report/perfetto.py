"""ETDump to Chrome/Perfetto trace-event JSON (open in ui.perfetto.dev or chrome://tracing).

One track (thread) per iteration; delegate operators nested under their DELEGATE_CALL (clamped
into its interval, so viewers nest them even when the delegate's microsecond clock rounds past
the call's edge); Method::execute as the outer slice. Two runs go into one file as A/B processes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kit.core import atomic

REQUIRED = {"X": ("name", "ph", "ts", "dur", "pid", "tid"), "M": ("name", "ph", "pid", "args")}


def events(rows: pd.DataFrame, pid: int, label: str, max_iterations: int = 20) -> list[dict]:
    """Trace events of one run's rows (kit.trace.etdump.Trace.rows)."""
    out = [{"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label}}]
    for it in sorted(rows.iteration.unique())[:max_iterations]:
        r = rows[rows.iteration == it].sort_values("seq")
        tid = int(it) + 1
        out.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": f"iteration {int(it)}"}})
        calls = {
            int(c.instruction_id): (float(c.start_us), float(c.start_us) + 1e3 * float(c.duration_ms))
            for c in r[r.row_kind == "delegate_call"].itertuples()
        }
        for e in r.itertuples():
            ts, dur = float(e.start_us), 1e3 * float(e.duration_ms)
            if e.row_kind == "operator" and e.delegated and int(e.instruction_id) in calls:
                lo, hi = calls[int(e.instruction_id)]
                ts = min(max(ts, lo), hi)
                dur = max(0.0, min(ts + dur, hi) - ts)
            cat = {
                "method": "method",
                "delegate_call": "delegate",
                "operator": "delegated op" if e.delegated else "portable op",
            }[e.row_kind]
            args = {"instruction": int(e.instruction_id), "backend": e.backend}
            if e.row_kind == "operator":
                args["op_type"] = e.op_type
                if e.kernel_hint:
                    args["kernel"] = e.kernel_hint
            out.append(
                {
                    "name": e.event_name
                    if e.row_kind != "delegate_call"
                    else f"DELEGATE_CALL #{int(e.instruction_id)}",
                    "cat": cat,
                    "ph": "X",
                    "ts": round(ts, 3),
                    "dur": round(dur, 3),
                    "pid": pid,
                    "tid": tid,
                    "args": args,
                }
            )
    return out


def export(runs: list[tuple[str, pd.DataFrame]], path: Path, max_iterations: int = 20, extra: list[dict] = ()) -> Path:
    """Write one or more runs (label, trace rows) as processes 1, 2, ... of one trace file, and
    `extra` events (a simpleperf stack chart: its own process and clock) beside them."""
    trace = {
        "traceEvents": [ev for i, (label, rows) in enumerate(runs) for ev in events(rows, i + 1, label, max_iterations)]
        + list(extra),
        "displayTimeUnit": "ms",
        "otherData": {"generator": "sme2 trace"},
    }
    validate(trace)
    return atomic.write_text(Path(path), json.dumps(trace))


def validate(trace: dict) -> None:
    """The trace-event format's required fields, per phase; raises ValueError."""
    if not isinstance(trace.get("traceEvents"), list):
        raise ValueError("no traceEvents list")
    for i, e in enumerate(trace["traceEvents"]):
        need = REQUIRED.get(e.get("ph"))
        if need is None:
            raise ValueError(f"event {i}: unknown phase {e.get('ph')!r}")
        missing = [k for k in need if k not in e]
        if missing:
            raise ValueError(f"event {i} ({e.get('name')}): missing {missing}")
        if e["ph"] == "X" and (
            not isinstance(e["ts"], (int, float)) or not isinstance(e["dur"], (int, float)) or e["dur"] < 0
        ):
            raise ValueError(f"event {i} ({e.get('name')}): ts/dur must be numbers, dur >= 0")
