"""The per-event ETDump reader this project used before the vectorized one (kit.trace.etdump), kept
verbatim as the reference path: tests check that the fast reader returns identical rows, the same
init times and the same errors on real traces. Not used by the product."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.core.errors import TraceError
from kit.trace.etdump import COLUMNS, Trace, compute_signature, kernel_hint, op_type_of
from kit.trace.program import ProgramMap

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U64 = struct.Struct("<Q").unpack_from


class _Reader:
    """The slice of a size-prefixed flatbuffer reader that ETDump needs."""

    def __init__(self, buf: bytes):
        self.buf = buf

    def table(self, pos: int) -> tuple[int, tuple[int, ...]]:
        buf = self.buf
        vt = pos - _I32(buf, pos)[0]
        n = (_U16(buf, vt)[0] - 4) // 2
        return pos, struct.unpack_from(f"<{n}H", buf, vt + 4)

    def field(self, t, i: int) -> int | None:
        pos, offs = t
        return pos + offs[i] if i < len(offs) and offs[i] else None

    def ref(self, p: int) -> int:
        return p + _U32(self.buf, p)[0]

    def string(self, t, i: int) -> str | None:
        p = self.field(t, i)
        if p is None:
            return None
        s = self.ref(p)
        n = _U32(self.buf, s)[0]
        return self.buf[s + 4 : s + 4 + n].decode("utf-8", "replace")

    def tables(self, t, i: int) -> list:
        p = self.field(t, i)
        if p is None:
            return []
        v = self.ref(p)
        n = _U32(self.buf, v)[0]
        return [self.table(self.ref(v + 4 + 4 * k)) for k in range(n)]

    def scalar(self, t, i: int, unpack, default):
        p = self.field(t, i)
        return default if p is None else unpack(self.buf, p)[0]


@dataclass
class RawEvent:
    block: int
    name: str | None
    instruction_id: int
    delegate_id: str | None
    start: int
    end: int


def read_events(path: Path) -> list[RawEvent]:
    """All profile events in file order. Raises TraceError on anything that is not a whole ETDump."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise TraceError(f"cannot read ETDump {path}: {e.strerror}", "check the path; re-run the ETDump run") from e
    if len(buf) < 16 or buf[8:12] != b"ED00":
        raise TraceError(f"{path} is not an ETDump (no ED00 identifier)", "pass the .etdp file an ETDump run wrote")
    if _U32(buf, 0)[0] != len(buf) - 4:
        raise TraceError(
            f"ETDump {path} is truncated or padded: header says {_U32(buf, 0)[0] + 4} bytes, file has {len(buf)}",
            "re-run the ETDump run; the copy may have been cut short",
        )
    r = _Reader(buf)
    events: list[RawEvent] = []
    try:
        root = r.table(r.ref(4))
        for b, rd in enumerate(r.tables(root, 1)):
            for ev in r.tables(rd, 3):
                p = r.field(ev, 0)
                if p is None:
                    continue  # allocation or debug events
                pe = r.table(r.ref(p))
                events.append(
                    RawEvent(
                        block=b,
                        name=r.string(pe, 0),
                        instruction_id=r.scalar(pe, 2, _I32, -1),
                        delegate_id=r.string(pe, 4),
                        start=r.scalar(pe, 6, _U64, 0),
                        end=r.scalar(pe, 7, _U64, 0),
                    )
                )
    except (struct.error, IndexError, UnicodeDecodeError) as e:
        raise TraceError(f"ETDump {path} is corrupt ({e})", "re-run the ETDump run") from e
    return events


def ingest_reference(path: Path, program: ProgramMap | None = None, warmup: int = 0) -> Trace:
    """Parse an ETDump into a Trace. With a program map, every event is checked against the
    program's instructions and portable operators get their real operator names."""
    path = Path(path)
    events = read_events(path)
    init_ms: dict[str, float] = {}
    iterations: list[list[RawEvent]] = []
    current: list[RawEvent] = []
    for ev in events:
        if ev.name in ("Method::init", "Program::load_method"):
            init_ms[ev.name] = (ev.end - ev.start) / 1e6
            continue
        current.append(ev)
        if ev.name == "Method::execute":
            iterations.append(current)
            current = []
    if not iterations:
        raise TraceError(
            f"ETDump {path} holds no Method::execute event",
            "was the runner built with the event tracer (ET_EVENT_TRACER_ENABLED)?",
        )
    if warmup >= len(iterations):
        raise TraceError(
            f"ETDump {path} has {len(iterations)} iterations, all of them warmups ({warmup})",
            "run more iterations than warmups",
        )
    traced = program.traced if program else None
    records = []
    for it, evs in enumerate(iterations[warmup:]):
        method = evs[-1]
        t0 = method.start
        seen_instr: set[int] = set()
        # OPERATOR_CALL wraps its kernel's native_call_* event: keep one row per portable
        # instruction (the OPERATOR_CALL, named after the kernel) so nothing counts twice.
        kernel_names = {
            e.instruction_id: e.name[len("native_call_") :] for e in evs if e.name and e.name.startswith("native_call_")
        }
        has_opcall = {e.instruction_id for e in evs if e.name == "OPERATOR_CALL"}
        for seq, e in enumerate(evs):
            dur = (e.end - e.start) / 1e6
            start_us = (e.start - t0) / 1e3
            if e.name == "Method::execute":
                records.append(
                    (it, seq, "method", "Method::execute", "Method::execute", False, "", -1, start_us, dur, "")
                )
            elif e.name == "DELEGATE_CALL":
                seen_instr.add(e.instruction_id)
                backend = traced[e.instruction_id].name if traced and e.instruction_id in traced else "delegate"
                _check(traced, e.instruction_id, "delegate", "DELEGATE_CALL", path)
                records.append(
                    (
                        it,
                        seq,
                        "delegate_call",
                        "DELEGATE_CALL",
                        "DELEGATE_CALL",
                        True,
                        backend,
                        e.instruction_id,
                        start_us,
                        dur,
                        "",
                    )
                )
            elif e.name is None and e.delegate_id is not None:
                _check(traced, e.instruction_id, "delegate", e.delegate_id, path)
                backend = traced[e.instruction_id].name if traced and e.instruction_id in traced else "XnnpackBackend"
                op = op_type_of(e.delegate_id)
                records.append(
                    (
                        it,
                        seq,
                        "operator",
                        e.delegate_id,
                        op,
                        True,
                        backend,
                        e.instruction_id,
                        start_us,
                        dur,
                        kernel_hint(op),
                    )
                )
            elif e.name == "OPERATOR_CALL" or (
                e.name and e.name.startswith("native_call_") and e.instruction_id not in has_opcall
            ):
                seen_instr.add(e.instruction_id)
                _check(traced, e.instruction_id, "kernel", e.name, path)
                kernel = kernel_names.get(e.instruction_id, "")
                if traced and e.instruction_id in traced:
                    op = traced[e.instruction_id].name
                    if kernel and not op.endswith(kernel):
                        raise TraceError(
                            f"ETDump {path} does not belong to this program: instruction {e.instruction_id} ran {kernel} but the program has {op}",
                            "analyse the ETDump with the .pte that produced it",
                        )
                else:
                    op = kernel or "OPERATOR_CALL"
                records.append(
                    (it, seq, "operator", kernel or op, op, False, "portable", e.instruction_id, start_us, dur, "")
                )
            # native_call_* inside an OPERATOR_CALL and other runtime events are not rows.
        if traced is not None and seen_instr != set(traced):
            missing = sorted(set(traced) - seen_instr)[:5]
            extra = sorted(seen_instr - set(traced))[:5]
            raise TraceError(
                f"ETDump {path} does not belong to this program: iteration {it + warmup} ran instructions {sorted(seen_instr)[:8]}..., the program has {len(traced)} traced instructions (missing {missing}, unexpected {extra})",
                "analyse the ETDump with the .pte (and program_map.json) that produced it",
            )
    rows = pd.DataFrame.from_records(records, columns=COLUMNS)
    if program is not None and program.signature:
        seen = compute_signature(rows)
        if seen != program.signature:
            diff = next(
                (k for k in sorted(set(seen) | set(program.signature)) if seen.get(k) != program.signature.get(k)), "?"
            )
            raise TraceError(
                f"ETDump {path} does not belong to this program: delegate instruction {diff} ran {seen.get(diff, [])} but the program's check run ran {program.signature.get(diff, [])}",
                "analyse the ETDump with the .pte (and program_map.json) that produced it",
            )
    return Trace(
        rows=rows,
        iterations=len(iterations) - warmup,
        warmup_dropped=warmup,
        init_ms=init_ms,
        source=str(path),
        warmup_method_ms=[(evs[-1].end - evs[-1].start) / 1e6 for evs in iterations[:warmup]],
    )


def _check(traced: dict | None, instr: int, kind: str, what: str, path: Path) -> None:
    if traced is None:
        return
    ins = traced.get(instr)
    if ins is None or ins.kind != kind:
        have = f"a {ins.kind} call to {ins.name}" if ins else "no such traced instruction"
        raise TraceError(
            f"ETDump {path} does not belong to this program: event {what!r} at instruction {instr}, but the program has {have} there",
            "analyse the ETDump with the .pte (and program_map.json) that produced it",
        )
