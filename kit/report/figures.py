"""The learning path's figures, regenerated from real runs by `sme2 docs figures`: the software
stack (drawn by code), SME2 on/off per inference, the stacked category breakdown, and the
data-movement (transpose) hotspots; plus `figures.json` saying which runs each figure shows.

On hardware the figures show measured time. On the emulated pair they show estimated cycles from
the instructions the emulated CPU retired (kit.counts), labelled as such, with the kernel switch
beside them: emulated milliseconds are never drawn as speed (an emulated pair without counts is
refused, with the command that counts it).

Figures are compared by structure, not pixels (`structure`): the set of text labels that are not
numbers and the number of marks of each kind. Two runs of the same model on the same device give
the same structure; a renamed category, a missing bar or a lost label changes it."""

from __future__ import annotations

import html
import re
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import pandas as pd
import vl_convert as vlc

from kit.analysis import compare, datamovement
from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant, device_name
from kit.counts import table as count_table
from kit.profile import session
from kit.report.charts import category_color
from kit.stats.categories import BLOG_ORDER
from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse
from kit.trace.program import ProgramMap

FIGURES = ("stack", "sme2_latency", "category_breakdown", "transpose_hotspots")
WIDTH = 440  # small: the pages show them at their natural size
EMULATED_NOTE = ["Emulated CPU: estimated cycles from counted", "instructions, not hardware time"]
# Room around every figure: vl-convert lays text out with its own font metrics, browsers with
# theirs (often wider); the learning path's fit test renders each figure in Chromium.
PADDING = {"left": 30, "right": 40, "top": 10, "bottom": 10}
SME2_COLORS = alt.Scale(domain=["off", "on"], range=["#9D9D9D", "#4C78A8"])

# The stack, top to bottom: (layer, what it does here, where this platform sees it).
STACK = (
    ("PyTorch", "eager nn.Module (models/<name>/model.py)", "sme2 export"),
    ("ExecuTorch", ".pte program + ETRecord; runtime writes the ETDump", "per-operator events"),
    ("XNNPACK delegate", "runs the delegated subgraphs (NHWC)", "op names: Convolution (NHWC, PF32)"),
    ("Arm KleidiAI", "packed micro-kernels XNNPACK picks at run time", "dtype tags PF32, PQS8"),
    ("SME2", "Armv9 matrix engine (Scalable Matrix Extension 2)", "kernel family kleidiai-sme2"),
)
STACK_COLORS = ("#EE4C2C", "#6B5B95", "#2E86AB", "#0091BD", "#00C1DE")


@dataclass
class Figures:
    paths: dict[str, Path]
    manifest: Path
    runs: list[str]
    emulated: bool


def stack_svg() -> str:
    """The stack PyTorch -> ExecuTorch -> XNNPACK -> KleidiAI -> SME2 as a plain SVG (no data)."""
    box_w, box_h, gap, left, top = 300, 46, 16, 10, 52
    width, height = 600, top + len(STACK) * (box_h + gap)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
        ' font-family="Helvetica, Arial, sans-serif" role="img" aria-label="The software stack">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold" fill="#222">'
        "From a PyTorch model to SME2 instructions</text>",
        f'<text x="{left + box_w + 24}" y="{top - 8}" font-size="12" font-style="italic" fill="#555">'
        "what the profiler sees</text>",
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="4" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for i, ((name, what, seen), color) in enumerate(zip(STACK, STACK_COLORS)):
        y = top + i * (box_h + gap)
        parts += [
            f'<g class="layer" data-layer="{html.escape(name)}">',
            f'<rect x="{left}" y="{y}" width="{box_w}" height="{box_h}" rx="6" fill="{color}"/>',
            f'<text x="{left + 10}" y="{y + 19}" font-size="14" font-weight="bold" fill="white">{html.escape(name)}</text>',
            f'<text x="{left + 10}" y="{y + 36}" font-size="10.5" fill="white">{html.escape(what)}</text>',
            f'<text x="{left + box_w + 24}" y="{y + 28}" font-size="11.5" fill="#333">{html.escape(seen)}</text>',
            "</g>",
        ]
        if i < len(STACK) - 1:
            x = left + box_w / 2
            parts.append(
                f'<line x1="{x}" y1="{y + box_h}" x2="{x}" y2="{y + box_h + gap - 2}" stroke="#555"'
                ' stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _pairs(wh: Warehouse, model: str, dtypes: list[str], device: str) -> list[compare.Comparison]:
    out = []
    for d in dtypes:
        try:
            c = compare.compare(wh, Variant(model, d).key, device)
        except Sme2Error as e:
            raise Sme2Error(
                f"figures need SME2 on and off runs of {model}-{d} on {device}: {e.message}",
                f"sme2 profile --model {model} --dtype {','.join(dtypes)} --target {device}.sme2-on,{device}.sme2-off",
            ) from e
        if c.emulated and c.counts is None:
            raise Sme2Error(
                f"the emulated SME2 pair of {model}-{d} on {device} has no instruction counts: its times are the "
                "emulator's, which the figures never draw as speed",
                f"sme2 setup --counts; then sme2 profile --model {model} --dtype {','.join(dtypes)} "
                f"--target {device}.sme2-on,{device}.sme2-off --counts",
            )
        out.append(c)
    return out


def _subtitle(emulated: bool) -> list[str]:
    return EMULATED_NOTE if emulated else ["hardware: measured time"]


def _switch(c: compare.Comparison, flag: str) -> str:
    """The kernel families of the matrix categories (Convolution, GEMM) on one side: the switch."""
    col = "kernels_a" if flag == "off" else "kernels_b"
    fams = {f for v in c.categories[c.categories.category.isin(["Convolution", "GEMM"])][col] for f in v.split(",")}
    return ", ".join(sorted(fams - {"-", "", "portable"})) or "-"


def latency_chart(comps: list[compare.Comparison], model: str, device: str) -> alt.Chart:
    """Per inference, SME2 off and on: measured median ms on hardware; estimated cycles of
    Method::execute on the emulated pair. Each bar names its matrix kernels."""
    rows = []
    emulated = any(c.emulated for c in comps)
    for c in comps:
        dtype = Variant.parse(c.variant).dtype
        if emulated:
            values = (c.counts_execute["a_est_cycles"], c.counts_execute["b_est_cycles"])
        else:
            values = (c.e2e["a_ms"], c.e2e["b_ms"])
        for flag, value in zip(("off", "on"), values):  # a: SME2 off
            rows.append({"variant": f"{dtype} SME2 {flag}", "SME2": flag, "value": value, "kernels": _switch(c, flag)})
    df = pd.DataFrame(rows)
    title = "estimated cycles per inference" if emulated else "median ms per inference"
    base = alt.Chart(df, title=alt.Title(f"{model}: SME2 off vs on", subtitle=_subtitle(emulated)))
    bars = base.mark_bar().encode(
        y=alt.Y("variant:N", title=None, sort=list(df.variant)),
        x=alt.X("value:Q", title=title, axis=alt.Axis(format="~s", tickCount=4, labelOverlap=True)),
        color=alt.Color("SME2:N", scale=SME2_COLORS, title="SME2", legend=alt.Legend(orient="bottom")),
    )
    labels = base.mark_text(align="left", dx=4, fontSize=10, color="#333").encode(
        y=alt.Y("variant:N", sort=list(df.variant)), x="value:Q", text="kernels:N"
    )
    return (bars + labels).properties(width=WIDTH - 220, padding=PADDING)


def category_chart(comps: list[compare.Comparison], model: str, device: str) -> alt.Chart:
    """Each category's share: of operator time on hardware, of estimated cycles on the emulated pair."""
    rows = []
    emulated = any(c.emulated for c in comps)
    for c in comps:
        dtype = Variant.parse(c.variant).dtype
        table = c.counts if emulated else c.categories
        a_col, b_col = ("a_est_cycles", "b_est_cycles") if emulated else ("a_ms", "b_ms")
        for r in table.itertuples():
            for flag in ("off", "on"):
                rows.append(
                    {
                        "variant": f"{dtype} SME2 {flag}",
                        "category": r.category,
                        "value": getattr(r, a_col if flag == "off" else b_col),
                        "order": BLOG_ORDER.index(r.category),
                    }
                )
    df = pd.DataFrame(rows)
    what = "share of estimated cycles" if emulated else "share of operator time"
    return (
        alt.Chart(df, title=alt.Title(f"{model}: {what}", subtitle=_subtitle(emulated)))
        .mark_bar()
        .encode(
            y=alt.Y("variant:N", title=None, sort=list(dict.fromkeys(df.variant))),
            x=alt.X(
                "value:Q", stack="normalize", title=what, axis=alt.Axis(format="%", tickCount=5, labelOverlap=True)
            ),
            color=category_color(legend=alt.Legend(orient="bottom", columns=2, title=None)),
            order=alt.Order("order:Q"),
        )
        .properties(width=WIDTH - 160, padding=PADDING)
    )


def hotspot_chart(root: DataRoot, comps: list[compare.Comparison], model: str, device: str) -> alt.Chart:
    """Every module blamed for data movement in the SME2-on run of each dtype (all of them, so
    the chart's labels do not depend on timing noise): its time on hardware, its estimated cycles
    on the emulated pair."""
    wh = Warehouse.at(root)
    rows = []
    emulated = any(c.emulated for c in comps)
    for c in comps:
        dtype = Variant.parse(c.variant).dtype
        run_dir = stored_runs.run_folder(wh, c.b.run_id)
        pmap = ProgramMap.load(run_dir) if (run_dir / "program_map.json").exists() else None
        if emulated:
            counted = count_table.read(run_dir)
            dm = datamovement.analyze(counted[counted.iteration == 0], pmap, measure="est_cycles")
        else:
            dm = datamovement.analyze(session.load_run(run_dir).trace.rows, pmap)
        rows += [{"run": f"{dtype} SME2 on", "module": h.module, "value": h.ms} for h in dm.hotspots.itertuples()]
    if not rows:
        raise Sme2Error(f"no data-movement operators in the runs of {model} on {device}", "profile another model")
    what = "data-movement est. cycles" if emulated else "data-movement ms per inference"
    return (
        alt.Chart(
            pd.DataFrame(rows),
            title=alt.Title(f"{model}: modules causing data movement", subtitle=_subtitle(emulated)),
        )
        .mark_bar(color="#E45756")
        .encode(
            y=alt.Y("module:N", sort="-x", title=None, axis=alt.Axis(labelLimit=200)),
            x=alt.X("value:Q", title=what, axis=alt.Axis(format="~s", tickCount=4, labelOverlap=True)),
            row=alt.Row("run:N", title=None, header=alt.Header(labelOrient="top", labelFontWeight="bold")),
        )
        .properties(width=WIDTH - 240, height=alt.Step(12), padding={**PADDING, "left": 60})
        .resolve_scale(y="independent")
    )


def generate(
    root: DataRoot, out_dir: Path, model: str = "tiny_seg", dtypes=("fp32", "int8"), device: str = "armv9-qemu"
) -> Figures:
    """Write every figure into out_dir (stack.svg, sme2_latency.svg, category_breakdown.svg,
    transpose_hotspots.svg, figures.json) from the current SME2 on/off runs of `model` on `device`."""
    device_name(device)
    dtypes = list(dtypes)
    variants = [Variant(model, d) for d in dtypes]  # validates the names
    wh = Warehouse.at(root)
    if not wh.path.exists():
        raise Sme2Error(f"no warehouse at {wh.path}", f"sme2 pipeline --model {model} --dtype {','.join(dtypes)}")
    comps = _pairs(wh, model, dtypes, device)
    out_dir = Path(out_dir)
    paths = {"stack": atomic.write_text(out_dir / "stack.svg", stack_svg())}
    charts = {
        "sme2_latency": latency_chart(comps, model, device),
        "category_breakdown": category_chart(comps, model, device),
        "transpose_hotspots": hotspot_chart(root, comps, model, device),
    }
    for name, chart in charts.items():
        paths[name] = atomic.write_text(out_dir / f"{name}.svg", vlc.vegalite_to_svg(chart.to_json()))
    emulated = any(c.emulated for c in comps)
    runs = [r for c in comps for r in (c.a.run_id, c.b.run_id)]
    manifest = atomic.write_json(
        out_dir / "figures.json",
        {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": f"sme2 docs figures --model {model} --dtype {','.join(dtypes)} --device {device}",
            "variants": [v.key for v in variants],
            "device": device,
            "emulated": emulated,
            "runs": runs,
            "figures": {name: p.name for name, p in paths.items()},
            "structure": {name: structure(p.read_text()) for name, p in paths.items()},
        },
    )
    return Figures(paths, manifest, runs, emulated)


# Tick labels and other numbers vary from run to run: "0", "1,000", "20%", "0.5", "−2".
_NUMBER = re.compile(r"^[\s\d.,%−+-]*\d[\s\d.,%−+-]*$")


def structure(svg_text: str) -> dict:
    """What a figure shows, without its numbers: the sorted non-numeric text labels and the count
    of marks per mark kind (bars, rules, ...). Equal structures = the same figure, new numbers."""
    tree = ET.fromstring(svg_text)
    texts = sorted(
        {
            " ".join("".join(el.itertext()).split())
            for el in tree.iter()
            if el.tag.endswith("text") and "".join(el.itertext()).strip()
        }
        - {""}
    )
    texts = [t for t in texts if not _NUMBER.match(t)]
    marks: Counter = Counter()
    for el in tree.iter():
        cls = el.get("class", "")
        if "role-mark" in cls.split() or cls == "layer":
            marks[cls] += len(list(el)) if "role-mark" in cls.split() else 1
    return {"texts": texts, "marks": dict(sorted(marks.items()))}
