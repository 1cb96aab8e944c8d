"""A sampled CPU profile of one run on an Android phone, recorded with the phone's own simpleperf
(`sme2 profile --simpleperf`): where the runner's time goes below the operator level (XNNPACK
microkernels, packing, threadpool waits), beside the ETDump trace of the same model.

On the phone: `simpleperf record -g -f FREQ -o perf.data -- <the run>`, then `simpleperf
report-sample --show-callchain` (text) and `report-sample --protobuf` (the file the Firefox
Profiler and Android Studio open). Here the text is turned into folded stacks (flamegraph.pl,
speedscope), a self-contained flame graph SVG, and a Chrome-JSON stack chart that ui.perfetto.dev
opens (`sme2 trace` merges it beside the ETDump operators). The text format is simpleperf's
cmd_report_sample.cpp PrintSample: `sample:` blocks of `key: value` lines, then `callchain:` frames."""

from __future__ import annotations

import html
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from kit.core import atomic
from kit.devices import simpleperf as phone

FOLDER = "simpleperf"
DATA, SAMPLES_TEXT, PROTO = phone.DATA, phone.SAMPLES_TEXT, phone.PROTO
FOLDED = "simpleperf.folded"
FLAME = "simpleperf_flame.svg"
TRACE = "simpleperf_trace.json"


@dataclass
class Sample:
    time_ns: int
    count: int
    thread_id: int
    thread_name: str
    frames: list[str] = field(default_factory=list)  # leaf first, as simpleperf prints them


def _frame(symbol: str, file: str) -> str:
    name = Path(file).name if file else ""
    if symbol and not symbol.startswith(("unknown", "[")):
        return symbol
    return f"{symbol or '?'} ({name})" if name else (symbol or "?")


def parse_report_sample(text: str) -> list[Sample]:
    """simpleperf report-sample's text output to samples (frames leaf first)."""
    samples: list[Sample] = []
    current: Sample | None = None
    symbol = file = None
    in_chain = False

    def flush_frame():
        nonlocal symbol, file
        if current is not None and symbol is not None:
            current.frames.append(_frame(symbol, file or ""))
        symbol = file = None

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if not raw.startswith((" ", "\t")):  # a record header: sample:, meta_info:, lost_situation: ...
            flush_frame()
            in_chain = False
            current = None
            if line == "sample:":
                current = Sample(0, 0, 0, "")
                samples.append(current)
            continue
        if current is None:
            continue
        key, _, value = line.partition(": ")
        key = key.rstrip(":")
        if key == "callchain":
            flush_frame()
            in_chain = True
        elif key == "vaddr_in_file":
            flush_frame()
            symbol, file = "", ""
        elif key == "file":
            file = value
        elif key == "symbol":
            symbol = value
        elif not in_chain:
            if key == "time":
                current.time_ns = int(value)
            elif key == "event_count":
                current.count = int(value)
            elif key == "thread_id":
                current.thread_id = int(value)
            elif key == "thread_name":
                current.thread_name = value
    flush_frame()
    return [s for s in samples if s.frames]


def folded(samples: list[Sample]) -> Counter:
    """Brendan Gregg's folded stacks: 'thread;root;...;leaf' -> event count."""
    out: Counter = Counter()
    for s in samples:
        out[";".join([s.thread_name or str(s.thread_id), *reversed(s.frames)])] += s.count or 1
    return out


def self_time(samples: list[Sample]) -> list[tuple[str, float]]:
    """(leaf symbol, share of all events) for the hottest leaves, largest first."""
    total = sum(s.count or 1 for s in samples) or 1
    leaves: Counter = Counter()
    for s in samples:
        leaves[s.frames[0]] += s.count or 1
    return [(name, n / total) for name, n in leaves.most_common()]


def flame_svg(stacks: Counter, title: str, width: int = 1200, row: int = 16) -> str:
    """A self-contained flame graph (no script): one rectangle per frame, widths by event count,
    hover titles with the count and share."""
    tree: dict = {"n": 0, "kids": {}}
    for stack, n in stacks.items():
        node = tree
        node["n"] += n
        for name in stack.split(";"):
            node = node["kids"].setdefault(name, {"n": 0, "kids": {}})
            node["n"] += n
    total = tree["n"] or 1
    rects: list[str] = []
    depth_max = 0

    def draw(node: dict, name: str, x: float, depth: int) -> None:
        nonlocal depth_max
        w = node["n"] / total * width
        if w < 0.3:
            return
        depth_max = max(depth_max, depth)
        y = -depth * row  # flipped below: the root at the bottom
        share = node["n"] / total * 100
        label = html.escape(name)
        hue = 10 + zlib.crc32(name.encode()) % 40  # stable across runs (hash() is salted)
        text = label if w > 7 * 6 else ""
        max_chars = int(w / 7)
        if text and len(name) > max_chars:
            text = html.escape(name[: max(max_chars - 2, 1)]) + ".."
        rects.append(
            f"<g><title>{label} ({node['n']} events, {share:.2f}%)</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="hsl({hue},85%,60%)"/>'
            + (f'<text x="{x + 3:.1f}" y="{y + row - 4}">{text}</text>' if text else "")
            + "</g>"
        )
        child_x = x
        for kid_name, kid in sorted(node["kids"].items()):
            draw(kid, kid_name, child_x, depth + 1)
            child_x += kid["n"] / total * width

    x = 0.0
    for name, kid in sorted(tree["kids"].items()):
        draw(kid, name, x, 0)
        x += kid["n"] / total * width
    height = (depth_max + 1) * row + 40
    shift = height - row
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<text x="4" y="14" font-size="13">{html.escape(title)}</text>'
        f'<g transform="translate(0,{shift})">{"".join(rects)}</g></svg>\n'
    )


def chrome_events(samples: list[Sample], pid: int = 1000, label: str = "simpleperf samples") -> list[dict]:
    """A stack chart as Chrome-JSON complete events: consecutive samples of a thread that share a
    frame at a depth become one slice there (each sample lasts until the thread's next one)."""
    events: list[dict] = []
    by_thread: dict[int, list[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.time_ns):
        by_thread.setdefault(s.thread_id, []).append(s)
    t0 = min((s.time_ns for s in samples), default=0)
    for tid, run in by_thread.items():
        gaps = [b.time_ns - a.time_ns for a, b in zip(run, run[1:])]
        step = sorted(gaps)[len(gaps) // 2] if gaps else 250_000  # a lone sample: one period
        open_: list[tuple[str, int]] = []  # (frame, start ns) per depth
        for i, s in enumerate(run):
            end = run[i + 1].time_ns if i + 1 < len(run) else s.time_ns + step
            stack = list(reversed(s.frames))
            keep = 0
            while keep < min(len(open_), len(stack)) and open_[keep][0] == stack[keep]:
                keep += 1
            while len(open_) > keep:  # frames that ended: close them, innermost first
                name, start = open_.pop()
                events.append(_slice(name, start, s.time_ns, t0, pid, tid))
            for name in stack[keep:]:
                open_.append((name, s.time_ns))
            if i + 1 == len(run):
                while open_:
                    name, start = open_.pop()
                    events.append(_slice(name, start, end, t0, pid, tid))
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": run[0].thread_name}})
    events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": label}})
    return events


def _slice(name: str, start: int, end: int, t0: int, pid: int, tid: int) -> dict:
    return {"ph": "X", "name": name, "cat": "simpleperf", "ts": (start - t0) / 1000, "dur": (end - start) / 1000,
            "pid": pid, "tid": tid}  # fmt: skip


def write_views(folder: Path, title: str) -> dict:
    """From `folder`/samples.txt: folded stacks, the flame graph SVG and the stack-chart trace;
    returns a summary (samples, threads, the hottest leaves)."""
    samples = parse_report_sample((folder / SAMPLES_TEXT).read_text(errors="replace"))
    stacks = folded(samples)
    atomic.write_text(folder / FOLDED, "".join(f"{k} {v}\n" for k, v in sorted(stacks.items())))
    atomic.write_text(folder / FLAME, flame_svg(stacks, title))
    atomic.write_json(folder / TRACE, {"traceEvents": chrome_events(samples), "displayTimeUnit": "ms"})
    return {
        "samples": len(samples),
        "threads": len({s.thread_id for s in samples}),
        "hottest": [{"symbol": n, "share": round(f, 4)} for n, f in self_time(samples)[:10]],
        "files": [FOLDED, FLAME, TRACE, PROTO, DATA],
    }


def trace_events(run_dir: Path, pid: int) -> list[dict]:
    """The run's simpleperf stack chart (if it has one) as events of process `pid`, for `sme2 trace`."""
    folder = Path(run_dir) / FOLDER
    if not (folder / SAMPLES_TEXT).is_file():
        return []
    samples = parse_report_sample((folder / SAMPLES_TEXT).read_text(errors="replace"))
    return chrome_events(samples, pid, f"simpleperf samples ({Path(run_dir).name}; own clock)")
