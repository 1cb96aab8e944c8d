"""ETDump ingestion: an ETDump file to a normalized per-iteration operator table.

We read the flatbuffer directly (no flatc, no JSON round trip) and keep event order, so each
iteration's timeline survives. Rows come in three kinds, never mixed in sums:

- "operator": an operator's own time: an XNNPACK delegate-internal event, or a portable kernel
  (its OPERATOR_CALL, named from the program map).
- "delegate_call": a DELEGATE_CALL, which contains its delegate's operator events.
- "method": Method::execute, one per iteration (the end-to-end time as traced).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit.core.errors import TraceError
from kit.trace.program import ProgramMap

_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U16 = struct.Struct("<H").unpack_from
_U64 = struct.Struct("<Q").unpack_from

# dtype tags inside XNNPACK operator names that mean a KleidiAI packed-LHS kernel.
KLEIDIAI_TAGS = ("PF32", "PF16", "PQS8", "QP8")
# Chosen only when the CPU has SME2 (PF16 and QP8 also appear without it).
SME2_ONLY_TAGS = ("PF32", "PQS8")
_COUNTER = re.compile(r"\s+#\d+$")

COLUMNS = [
    "iteration",
    "seq",
    "row_kind",
    "event_name",
    "op_type",
    "delegated",
    "backend",
    "instruction_id",
    "start_us",
    "duration_ms",
    "kernel_hint",
]


# Field slots (vtable order) of executorch's devtools/etdump/etdump_schema_flatcc.fbs; the names are
# the schema's own, so a reader of this file can check them against it.
class ETDumpFields:
    version, run_data = 0, 1


class RunDataFields:
    name, bundled_input_index, allocators, events = 0, 1, 2, 3


class EventFields:  # exactly one of these is set
    profile_event, allocation_event, debug_event = 0, 1, 2


class ProfileEventFields:
    name, chain_index, instruction_id, delegate_debug_id_int, delegate_debug_id_str = 0, 1, 2, 3, 4
    delegate_debug_metadata, start_time, end_time = 5, 6, 7


class _Corrupt(Exception):
    """An offset or length that points outside the file."""


class _Buffer:
    """Little-endian scalars at arbitrary byte positions of a flatbuffer, gathered for many positions
    at once: each view is the file seen as overlapping integers with a 1-byte stride, so reading
    N fields is one numpy fancy index instead of N struct calls."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.size = len(buf)
        self._views = {
            code: np.ndarray((max(self.size - width + 1, 0),), np.dtype(code), buf, 0, (1,))
            for code, width in (("<u2", 2), ("<i4", 4), ("<u4", 4), ("<u8", 8))
        }

    def at(self, code: str, pos: np.ndarray) -> np.ndarray:
        view = self._views[code]
        if len(pos) and (pos.min() < 0 or pos.max() >= len(view)):
            raise _Corrupt(f"offset outside the file ({int(pos.min())}..{int(pos.max())} of {self.size} bytes)")
        # Positions and small fields as int64 (offset arithmetic never wraps); times stay uint64.
        return view[pos] if code == "<u8" else view[pos].astype(np.int64)

    def table(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(table positions, vtable positions, number of field slots) of the tables at `pos`."""
        vt = pos - self.at("<i4", pos)
        slots = (self.at("<u2", vt) - 4) // 2
        if len(slots) and (slots.min() < 0 or (vt + 4 + 2 * slots).max() > self.size):
            raise _Corrupt("a vtable is shorter than its header or runs past the end of the file")
        return pos, vt, slots

    def field(self, t, slot: int) -> np.ndarray:
        """Byte position of field `slot` in each table, 0 where it is absent (flatbuffers' default)."""
        pos, vt, slots = t
        present = slots > slot
        off = np.zeros(len(pos), np.int64)
        off[present] = self.at("<u2", vt[present] + 4 + 2 * slot)
        return np.where(off > 0, pos + off, 0)

    def scalar(self, t, slot: int, code: str, default: int) -> np.ndarray:
        p = self.field(t, slot)
        out = np.full(len(p), default, np.uint64 if code == "<u8" else np.int64)
        have = p > 0
        out[have] = self.at(code, p[have])
        return out

    def ref(self, p: np.ndarray) -> np.ndarray:
        return p + self.at("<u4", p)

    def vectors(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For vectors of offsets at positions `p`: (index of the vector each entry is in, the
        positions of the tables the entries point to), all vectors concatenated in order."""
        v = self.ref(p)
        n = self.at("<u4", v)
        if len(n) and (n > (self.size - v - 4) // 4).any():
            raise _Corrupt(f"a vector of {int(n.max())} entries does not fit in the file")
        owner = np.repeat(np.arange(len(v), dtype=np.int64), n)
        first = np.cumsum(n) - n  # index of each vector's first entry in the concatenation
        entry = v[owner] + 4 + 4 * (np.arange(len(owner), dtype=np.int64) - first[owner])
        return owner, self.ref(entry)

    def strings(self, t, slot: int) -> tuple[np.ndarray, list[str | None]]:
        """(codes, values): each table's string field as an index into `values`; absent -> None.
        Equal strings are decoded once (an ETDump repeats ~60 names thousands of times)."""
        p = self.field(t, slot)
        have = p > 0
        s = self.ref(p[have]) + 4  # first byte of each string (its u32 length sits before it)
        n = self.at("<u4", s - 4)
        codes = np.zeros(len(p), np.int64)
        if not len(s):
            return codes, [None]
        if (s + n).max() > self.size:
            raise _Corrupt("a string runs past the end of the file")
        group, first = self._group_equal(s, n)
        values: list[str | None] = [None] + [
            self.buf[a : a + k].decode("utf-8", "replace") for a, k in zip(s[first].tolist(), n[first].tolist())
        ]
        codes[have] = group + 1
        return codes, values

    def _group_equal(self, s: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Group equal byte strings (start s, length n): (group of each, first member of each group).
        A 64-bit hash of each string's 8-byte words groups them in one pass; the groups are then
        verified word by word, and a collision (never seen, but possible) takes the exact path."""
        u64 = self._views["<u8"]
        h = n.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        words = []
        for k in range((int(n.max()) + 7) // 8):
            rem = np.clip(n - 8 * k, 0, 8).astype(np.uint64)
            mask = np.where(rem == 8, np.uint64(2**64 - 1), (np.uint64(1) << (rem * np.uint64(8))) - np.uint64(1))
            w = u64[np.minimum(s + 8 * k, len(u64) - 1)] & mask  # bytes past the string masked off
            words.append(w)
            h = (h ^ w) * np.uint64(0x100000001B3 + 2 * k)
        group, uniq = pd.factorize(h)
        first = np.zeros(len(uniq), np.int64)
        first[group[::-1]] = np.arange(len(group) - 1, -1, -1)
        if (n == n[first][group]).all() and all((w == w[first][group]).all() for w in words):
            return group, first
        raw = [self.buf[a : a + k] for a, k in zip(s.tolist(), n.tolist())]
        group, uniq = pd.factorize(pd.Series(raw, dtype=object))
        first = np.zeros(len(uniq), np.int64)
        first[group[::-1]] = np.arange(len(group) - 1, -1, -1)
        return group, first


@dataclass
class ProfileEvents:
    """Every ProfileEvent of an ETDump, in file order, as columns (the schema's field names).
    String fields are codes into a list of values (index 0 is None: the field is absent)."""

    run_data: np.ndarray  # index of the RunData block each event belongs to
    name: np.ndarray
    names: list[str | None]
    instruction_id: np.ndarray
    delegate_debug_id_int: np.ndarray
    delegate_debug_id_str: np.ndarray
    delegate_debug_id_strs: list[str | None]
    start_time: np.ndarray
    end_time: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


def read_profile_events(path: Path) -> ProfileEvents:
    """All profile events in file order. Raises TraceError on anything that is not a whole ETDump."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise TraceError(f"cannot read ETDump {path}: {e.strerror}", "check the path; re-run the ETDump run") from e
    if len(buf) < 16 or buf[8:12] != b"ED00":
        raise TraceError(f"{path} is not an ETDump (no ED00 identifier)", "pass the .etdp file an ETDump run wrote")
    declared = int.from_bytes(buf[0:4], "little")
    if declared != len(buf) - 4:
        raise TraceError(
            f"ETDump {path} is truncated or padded: header says {declared + 4} bytes, file has {len(buf)}",
            "re-run the ETDump run; the copy may have been cut short",
        )
    b = _Buffer(buf)
    try:
        root = b.table(b.ref(np.array([4], np.int64)))
        run_data = b.field(root, ETDumpFields.run_data)
        _, blocks = b.vectors(run_data[run_data > 0])
        events = b.field(b.table(blocks), RunDataFields.events)
        block_of_vector = np.flatnonzero(events > 0)
        owner, event_tables = b.vectors(events[events > 0])
        profile = b.field(b.table(event_tables), EventFields.profile_event)
        timed = profile > 0  # allocation and debug events are not timings
        block_ids = block_of_vector[owner[timed]]
        pe = b.table(b.ref(profile[timed]))
        name, names = b.strings(pe, ProfileEventFields.name)
        did, dids = b.strings(pe, ProfileEventFields.delegate_debug_id_str)
        return ProfileEvents(
            run_data=block_ids,
            name=name,
            names=names,
            instruction_id=b.scalar(pe, ProfileEventFields.instruction_id, "<i4", -1),
            delegate_debug_id_int=b.scalar(pe, ProfileEventFields.delegate_debug_id_int, "<i4", -1),
            delegate_debug_id_str=did,
            delegate_debug_id_strs=dids,
            start_time=b.scalar(pe, ProfileEventFields.start_time, "<u8", 0),
            end_time=b.scalar(pe, ProfileEventFields.end_time, "<u8", 0),
        )
    except (_Corrupt, IndexError, ValueError, OverflowError, MemoryError) as e:
        raise TraceError(f"ETDump {path} is corrupt ({e})", "re-run the ETDump run") from e


def op_type_of(name: str) -> str:
    """XNNPACK operator name without its per-delegate `#n` counter."""
    return _COUNTER.sub("", name)


def kernel_hint(op_type: str) -> str:
    """'kleidiai:PF32' when the op name carries a KleidiAI packed dtype tag, else ''."""
    m = re.search(r"\(([^)]*)\)", op_type)
    if not m:
        return ""
    tags = [t.strip() for t in m.group(1).split(",")]
    hits = [t for t in tags if t in KLEIDIAI_TAGS]
    return f"kleidiai:{hits[0]}" if hits else ""


COMPUTE_KINDS = ("Convolution", "Deconvolution", "Fully Connected", "Batch Matrix Multiply")
_DTYPE_CLASS = {
    "F32": "f32",
    "PF32": "f32",
    "F16": "f16",
    "PF16": "f16",
    "QS8": "qs8",
    "QC8": "qs8",
    "PQS8": "qs8",
    "QU8": "qs8",
    "QD8": "qd8",
    "QP8": "qd8",
    "QDU8": "qd8",
}


def compute_class(op_type: str) -> str:
    """'Convolution:qs8' for 'Convolution (NHWC, PQS8, QC8W) IGEMM': the operator kind and its
    activation dtype class, the same whichever kernel (SME2 or not) the CPU picked."""
    kind = op_type.split(" (")[0]
    m = re.search(r"\(([^)]*)\)", op_type)
    tags = [t.strip() for t in m.group(1).split(",")] if m else []
    cls = next((_DTYPE_CLASS[t] for t in tags if t in _DTYPE_CLASS), "?")
    return f"{kind}:{cls}"


def compute_signature(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Per delegate instruction of the first iteration: its compute operators' classes, sorted."""
    first = rows[(rows.iteration == rows.iteration.min()) & (rows.row_kind == "operator") & rows.delegated]
    out: dict[str, list[str]] = {}
    for instr, group in first.groupby("instruction_id"):
        sig = sorted(compute_class(t) for t in group.op_type if t.startswith(COMPUTE_KINDS))
        if sig:
            out[str(instr)] = sig
    return out


@dataclass
class Trace:
    """One ETDump run as a table, warmups dropped. `rows` has COLUMNS; `init` holds load events."""

    rows: pd.DataFrame
    iterations: int
    warmup_dropped: int
    init_ms: dict[str, float]
    source: str
    warmup_method_ms: list[float] = field(default_factory=list)  # Method::execute of the dropped warmups
    # Each row's raw clock values (PAL ticks) as the trace holds them, aligned with `rows`: what the
    # instruction counts of an emulated run are matched against (kit.counts.attribution).
    start_ticks: np.ndarray | None = None
    end_ticks: np.ndarray | None = None

    @property
    def operators(self) -> pd.DataFrame:
        return self.rows[self.rows.row_kind == "operator"]

    @property
    def method_ms(self) -> np.ndarray:
        """Per-iteration Method::execute time (ms)."""
        return self.rows.loc[self.rows.row_kind == "method", "duration_ms"].to_numpy()


def _elapsed(start: np.ndarray, end: np.ndarray, unit: float) -> np.ndarray:
    """(end - start) / unit for uint64 clock values, exact like Python integers: the difference
    is taken in the direction that does not wrap, then converted (a negative span stays negative)."""
    forward = end >= start
    span = np.where(forward, end - start, start - end).astype(np.float64)
    return np.where(forward, span, -span) / unit


class _Vocabulary:
    """Strings by code: `vocab[s]` is s's code (added on first use); `column(codes)` the pandas
    string column, built by one take instead of one Python object per row."""

    def __init__(self):
        self.codes: dict[str, int] = {}

    def __getitem__(self, s: str) -> int:
        return self.codes.setdefault(s, len(self.codes))

    def column(self, codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
        return pd.array(list(self.codes), dtype="str").take(codes)


def ingest(path: Path, program: ProgramMap | None = None, warmup: int = 0) -> Trace:
    """Parse an ETDump into a Trace. With a program map, every event is checked against the
    program's instructions and portable operators get their real operator names.

    Column-wise: each decision below is made once per distinct name or instruction and broadcast
    to the events, so a 1000-iteration trace costs milliseconds, not one Python step per event."""
    path = Path(path)
    ev = read_profile_events(path)
    names = ev.names
    code = {s: i for i, s in enumerate(names) if s is not None}
    absent = -1  # a code no event has: the name does not occur in this file

    # Load events are reported apart (the last of each name wins); the rest are the timeline.
    init_codes = [code[n] for n in ("Method::init", "Program::load_method") if n in code]
    is_init = np.isin(ev.name, init_codes)
    init_ms = {
        names[c]: (e - s) / 1e6
        for c, s, e in zip(*(x[is_init].tolist() for x in (ev.name, ev.start_time, ev.end_time)))
    }
    keep = ~is_init
    name, instr, did = ev.name[keep], ev.instruction_id[keep], ev.delegate_debug_id_str[keep]
    start, end = ev.start_time[keep], ev.end_time[keep]

    # Iterations end at their Method::execute; events after the last one belong to none.
    is_exec = name == code.get("Method::execute", absent)
    exec_pos = np.flatnonzero(is_exec)
    if len(exec_pos) == 0:
        raise TraceError(
            f"ETDump {path} holds no Method::execute event",
            "was the runner built with the event tracer (ET_EVENT_TRACER_ENABLED)?",
        )
    if warmup >= len(exec_pos):
        raise TraceError(
            f"ETDump {path} has {len(exec_pos)} iterations, all of them warmups ({warmup})",
            "run more iterations than warmups",
        )
    warm = exec_pos[:warmup]
    warmup_method_ms = _elapsed(start[warm], end[warm], 1e6).tolist()  # Method::execute of the dropped warmups
    iteration = np.cumsum(is_exec) - is_exec
    first_pos = np.concatenate([[0], exec_pos[:-1] + 1])
    window = (iteration >= warmup) & (iteration < len(exec_pos))
    pos = np.flatnonzero(window)
    it = iteration[pos]
    seq = pos - first_pos[it]
    t0 = start[exec_pos][it]
    name, instr, did, start, end = name[pos], instr[pos], did[pos], start[pos], end[pos]
    it = it - warmup

    # What each event is (the same precedence as a per-event if/elif chain).
    native_codes = [c for s, c in code.items() if s.startswith("native_call_")]
    is_native = np.isin(name, native_codes)
    m_exec = name == code.get("Method::execute", absent)
    m_dcall = name == code.get("DELEGATE_CALL", absent)
    m_dop = (name == 0) & (did != 0)  # no name, a delegate debug id: an operator inside a delegate
    m_opcall = name == code.get("OPERATOR_CALL", absent)
    # OPERATOR_CALL wraps its kernel's native_call_* event: keep one row per portable
    # instruction (the OPERATOR_CALL, named after the kernel) so nothing counts twice.
    key = (it.astype(np.int64) << 32) | (instr & 0xFFFFFFFF)
    m_port = m_opcall | (is_native & ~np.isin(key, key[m_opcall]))

    # The kernel each portable row ran: the last native_call_* of its instruction in its iteration.
    nat_key, nat_name = key[is_native][::-1], name[is_native][::-1]
    uniq_key, last = np.unique(nat_key, return_index=True)
    at = np.clip(np.searchsorted(uniq_key, key), 0, max(len(uniq_key) - 1, 0))
    found = (uniq_key[at] == key) if len(uniq_key) else np.zeros(len(key), bool)
    kernel_code = np.where(found & m_port, nat_name[last][at] if len(uniq_key) else 0, 0)
    kernel_of = ["" if c == 0 else names[c][len("native_call_") :] for c in range(len(names))]

    traced = program.traced if program else None
    if traced is not None:
        _check_program(path, traced, warmup, it, name, names, instr, did, ev.delegate_debug_id_strs,
                       m_dcall, m_dop, m_port, kernel_code, kernel_of)  # fmt: skip

    rows_mask = m_exec | m_dcall | m_dop | m_port
    sel = np.flatnonzero(rows_mask)
    r_exec, r_dcall, r_dop, r_port = m_exec[sel], m_dcall[sel], m_dop[sel], m_port[sel]
    r_instr, r_did, r_kernel = instr[sel], did[sel], kernel_code[sel]
    # String columns are codes into one vocabulary, turned into pandas strings once at the end.
    vocab = _Vocabulary()
    row_kind = np.full(len(sel), vocab["operator"])
    row_kind[r_exec] = vocab["method"]
    row_kind[r_dcall] = vocab["delegate_call"]
    event_name = np.zeros(len(sel), np.int64)
    op_type = np.zeros(len(sel), np.int64)
    backend = np.full(len(sel), vocab[""])
    hint = np.full(len(sel), vocab[""])
    event_name[r_exec] = op_type[r_exec] = vocab["Method::execute"]
    event_name[r_dcall] = op_type[r_dcall] = vocab["DELEGATE_CALL"]

    def backend_of(i: int, fallback: str) -> str:
        return traced[i].name if traced and i in traced else fallback

    def per_distinct(keys: np.ndarray, fn) -> np.ndarray:
        """fn(key) -> vocabulary code, computed once per distinct key and broadcast."""
        u, inv = np.unique(keys, return_inverse=True)
        return np.array([fn(k) for k in u.tolist()], np.int64)[inv]

    if r_dcall.any():
        backend[r_dcall] = per_distinct(r_instr[r_dcall], lambda i: vocab[backend_of(i, "delegate")])
    if r_dop.any():
        strs = ev.delegate_debug_id_strs
        event_name[r_dop] = per_distinct(r_did[r_dop], lambda c: vocab[strs[c]])
        op_type[r_dop] = per_distinct(r_did[r_dop], lambda c: vocab[op_type_of(strs[c])])
        hint[r_dop] = per_distinct(r_did[r_dop], lambda c: vocab[kernel_hint(op_type_of(strs[c]))])
        backend[r_dop] = per_distinct(r_instr[r_dop], lambda i: vocab[backend_of(i, "XnnpackBackend")])
    if r_port.any():
        # A portable row is named by its instruction and the kernel it ran there.
        pair = (r_instr[r_port].astype(np.int64) << 32) | r_kernel[r_port]

        def portable_op(p: int) -> str:
            i, kernel = p >> 32, kernel_of[p & 0xFFFFFFFF]
            return traced[i].name if traced and i in traced else (kernel or "OPERATOR_CALL")

        op_type[r_port] = per_distinct(pair, lambda p: vocab[portable_op(p)])
        event_name[r_port] = per_distinct(pair, lambda p: vocab[kernel_of[p & 0xFFFFFFFF] or portable_op(p)])
        backend[r_port] = vocab["portable"]

    rows = pd.DataFrame(
        {
            "iteration": it[sel],
            "seq": seq[sel],
            "row_kind": vocab.column(row_kind),
            "event_name": vocab.column(event_name),
            "op_type": vocab.column(op_type),
            "delegated": r_dcall | r_dop,
            "backend": vocab.column(backend),
            "instruction_id": np.where(r_exec, -1, r_instr),
            "start_us": _elapsed(t0[sel], start[sel], 1e3),
            "duration_ms": _elapsed(start[sel], end[sel], 1e6),
            "kernel_hint": vocab.column(hint),
        },
        columns=COLUMNS,
    )
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
        iterations=len(exec_pos) - warmup,
        warmup_dropped=warmup,
        init_ms=init_ms,
        source=str(path),
        warmup_method_ms=warmup_method_ms,
        start_ticks=start[sel],
        end_ticks=end[sel],
    )


def _check_program(
    path, traced, warmup, it, name, names, instr, did, dids, m_dcall, m_dop, m_port, kernel_code, kernel_of
):
    """Prove the trace belongs to the program: every delegate and kernel event sits at an
    instruction of that kind, each portable kernel is the one the program names there, and every
    iteration runs exactly the program's traced instructions. Raises the first violation in
    timeline order (an event's own checks before its iteration's completeness)."""
    kinds = {i: ins.kind for i, ins in traced.items()}
    u, inv = np.unique(instr, return_inverse=True)
    kind_at = np.array([kinds.get(i, "") for i in u.tolist()], object)[inv]
    bad_kind = ((m_dcall | m_dop) & (kind_at != "delegate")) | (m_port & (kind_at != "kernel"))
    # A kernel that differs from the program's operator at that instruction.
    bad_kernel = np.zeros(len(instr), bool)
    ports = np.flatnonzero(m_port & ~bad_kind & (kernel_code != 0))
    if len(ports):
        pair = (instr[ports].astype(np.int64) << 32) | kernel_code[ports]
        up, pinv = np.unique(pair, return_inverse=True)
        wrong = np.array(
            [not traced[int(np.int32(p >> 32))].name.endswith(kernel_of[p & 0xFFFFFFFF]) for p in up.tolist()]
        )
        bad_kernel[ports] = wrong[pinv]
    first_event = np.flatnonzero(bad_kind | bad_kernel)
    # Per iteration, the instructions its delegate calls and portable kernels ran vs the program's.
    seen_rows = m_dcall | m_port
    n_iter = int(it.max()) + 1 if len(it) else 0
    traced_ids = np.array(sorted(traced), np.int64)
    inside = np.isin(instr, traced_ids)
    extra_iters = np.unique(it[seen_rows & ~inside])
    pairs = np.unique((it[seen_rows & inside].astype(np.int64) << 32) | (instr[seen_rows & inside] & 0xFFFFFFFF))
    complete = np.bincount((pairs >> 32).astype(np.int64), minlength=n_iter) == len(traced_ids)
    bad_iters = np.union1d(extra_iters, np.flatnonzero(~complete))
    if len(first_event) and (not len(bad_iters) or it[first_event[0]] <= bad_iters[0]):
        e = int(first_event[0])
        if bad_kind[e]:
            what = dids[did[e]] if m_dop[e] else ("DELEGATE_CALL" if m_dcall[e] else names[name[e]])
            _check(traced, int(instr[e]), "delegate" if (m_dcall[e] or m_dop[e]) else "kernel", what, path)
        i = int(instr[e])
        raise TraceError(
            f"ETDump {path} does not belong to this program: instruction {i} ran {kernel_of[kernel_code[e]]} but the program has {traced[i].name}",
            "analyse the ETDump with the .pte that produced it",
        )
    if len(bad_iters):
        k = int(bad_iters[0])
        seen_instr = set(instr[seen_rows & (it == k)].tolist())
        missing = sorted(set(traced) - seen_instr)[:5]
        extra = sorted(seen_instr - set(traced))[:5]
        raise TraceError(
            f"ETDump {path} does not belong to this program: iteration {k + warmup} ran instructions {sorted(seen_instr)[:8]}..., the program has {len(traced)} traced instructions (missing {missing}, unexpected {extra})",
            "analyse the ETDump with the .pte (and program_map.json) that produced it",
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
