"""Per model variant: a Markdown report and a self-contained HTML page (Vega inlined, renders
offline), with PNG copies of every chart. Every number comes from the warehouse, with its run ids."""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import pandas as pd

from kit.analysis import compare, datamovement
from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant
from kit.profile import session
from kit.report import charts
from kit.store.warehouse import Warehouse
from kit.trace.program import ProgramMap

# Chart panels: emulated and hardware times never share an axis.
KIND = {False: "hardware", True: "emulated (QEMU: not hardware times)"}
# History axes: dates a reader can read, whether the runs span seconds or months.
TIME_AXIS = alt.Axis(format="%b %d %H:%M", labelAngle=-30, tickCount=6, labelOverlap=True)


@dataclass
class Report:
    markdown: Path
    html: Path | None
    pngs: list[Path]  # the chart images (PNG, or SVG when asked)
    summary_md: str
    run_ids: list[str] = field(default_factory=list)


def _md(df: pd.DataFrame) -> str:
    return df.to_markdown(index=False, floatfmt=".3f") if not df.empty else "_none_"


def build(
    root: DataRoot, variant_key: str, out_dir: Path | None = None, image_format: str = "png", html_page: bool = True
) -> Report:
    """The report of one variant into `out_dir` (default reports/<variant>/): report.md with its
    charts as PNG (or SVG: smaller, for pages that publish the report) and, unless `html_page` is
    False, the self-contained report.html."""
    if image_format not in ("png", "svg"):
        raise Sme2Error(f"unknown image format {image_format!r}", "use png or svg")
    v = Variant.parse(variant_key)
    wh = Warehouse.at(root)
    runs = wh.query("SELECT * FROM current_runs WHERE variant = ? ORDER BY device, sme2 DESC, threads", [variant_key])
    if runs.empty:
        raise Sme2Error(
            f"no runs of {variant_key} in the warehouse",
            f"profile it first: sme2 profile --model {v.model} --dtype {v.dtype}",
        )
    out_dir = Path(out_dir) if out_dir is not None else root.reports / variant_key
    out_dir.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, str]] = []
    figures: list[tuple[str, alt.Chart]] = []
    run_ids = runs.run_id.tolist()

    comps = []
    for dev in runs.device.unique():
        try:
            comps.append(compare.compare(wh, variant_key, dev))
        except Sme2Error:
            continue
    body = []
    for c in comps:
        label = (
            " — **EMULATED: kernels and operator mix are real, times are not hardware times; no speedups shown**"
            if c.emulated
            else ""
        )
        body.append(
            f"### {c.device} ({c.threads} thread(s), size {c.size}){label}\n\n{c.headline()}\n\n{_md(compare.blog_table(c))}\n\nBottleneck: {c.bottleneck['off']} with SME2 off, {c.bottleneck['on']} with SME2 on. Runs: off `{c.run_off}`, on `{c.run_on}`."
        )
        top = c.operators.head(12)[
            ["operator", "category", "off_kernels", "on_kernels", "instances_off", "off_ms", "on_ms"]
            + (["speedup"] if not c.emulated else [])
        ]
        body.append(f"Operators (SME2 off vs on, kernel families from op names):\n\n{_md(top)}")
    sections.append(
        (
            "SME2 on vs off",
            "\n\n".join(body) or "_no SME2 on/off pair yet: profile <device>.sme2-on and <device>.sme2-off_",
        )
    )

    # The blog puts INT8 and FP16 side by side; show those first, then any other dtype measured on
    # this device, and only when there are two or more (one dtype repeats the table above).
    dtypes = ("int8", "fp16", "fp32", "int8-dynamic")
    side = compare.dtype_side_by_side(wh, v.model, comps[0].device, dtypes) if comps else pd.DataFrame()
    if sum(col.endswith(" share on") for col in side.columns) >= 2:
        sections.append(("Dtypes side by side", f"Device {comps[0].device}:\n\n{_md(side)}"))

    # End-to-end latency per target and thread count: hardware and emulated in separate panels.
    e2e = runs[["target", "threads", "emulated", "e2e_median_ms", "e2e_ci_low_ms", "e2e_ci_high_ms"]].copy()
    e2e["label"] = e2e.target + " t" + e2e.threads.astype(str) + e2e.emulated.map({True: " (emulated)", False: ""})
    sections.append(("End to end", _md(e2e.drop(columns=["label"]))))
    e2e["kind"] = e2e.emulated.map(KIND)
    e2e["SME2"] = e2e.target.str.endswith(".sme2-on").map({True: "on", False: "off"})
    base = alt.Chart(e2e)
    bars = (
        base.mark_bar().encode(
            y=alt.Y("label:N", title=None),
            x=alt.X("e2e_median_ms:Q", title="end-to-end median ms (95% CI)"),
            color=alt.Color("SME2:N", scale=alt.Scale(domain=["off", "on"], range=["#9D9D9D", "#4C78A8"])),
        )
        + base.mark_rule().encode(y="label:N", x="e2e_ci_low_ms:Q", x2="e2e_ci_high_ms:Q")
    ).properties(width=560)
    figures.append(
        (
            "e2e",
            bars.facet(
                row=alt.Row("kind:N", title=None, header=alt.Header(labelOrient="top", labelFontWeight="bold")),
                title=f"{variant_key}: end-to-end latency, SME2 on vs off per device and thread count",
            ).resolve_scale(x="independent", y="independent"),
        )
    )

    cats = wh.query(
        "SELECT r.target, r.threads, c.category, c.median_ms, c.share_of_execute FROM category_stats c JOIN current_runs r USING (run_id) WHERE r.variant = ? AND c.scheme = 'blog'",
        [variant_key],
    )
    cats["label"] = cats.target + " t" + cats.threads.astype(str)
    for emulated, group in cats.assign(emulated=cats.target.map(dict(zip(runs.target, runs.emulated)))).groupby(
        "emulated"
    ):
        figures.append(
            (
                "categories_emulated" if emulated else "categories",
                charts.category_bars(
                    group, f"{variant_key}: category breakdown per target" + (" (EMULATED times)" if emulated else "")
                ),
            )
        )

    ops = wh.query(
        "SELECT r.target, s.op_type, s.category, s.median_ms FROM op_stats s JOIN current_runs r USING (run_id) WHERE r.variant = ? AND r.threads = (SELECT min(threads) FROM current_runs WHERE variant = ?)",
        [variant_key, variant_key],
    )
    top_ops = ops.sort_values("median_ms", ascending=False).groupby("target").head(8)
    emulated_targets = set(runs.target[runs.emulated])
    top_ops["target"] = [t + (" (emulated)" if t in emulated_targets else "") for t in top_ops.target]
    figures.append(
        (
            "top_operators",
            alt.Chart(top_ops, title="Top operators per target (median ms)")
            .mark_bar()
            .encode(
                y=alt.Y("op_type:N", sort="-x", title=None, axis=alt.Axis(labelLimit=360)),
                x=alt.X("median_ms:Q", title="ms"),
                color=charts.category_color(),
                row=alt.Row("target:N", title=None),
            )
            .properties(width=420)
            .resolve_scale(x="independent", y="independent"),  # emulated and hardware never share an axis
        )
    )

    hist = wh.query(
        "SELECT started_at, target, threads, size, e2e_median_ms, emulated FROM runs WHERE variant = ? ORDER BY started_at",
        [variant_key],
    )
    hist["series"] = hist.target + " t" + hist.threads.astype(str) + " " + hist["size"]
    hist["kind"] = hist.emulated.map(KIND)
    figures.append(
        (
            "history",
            alt.Chart(hist, title="History of the end-to-end median (emulated and hardware never share a panel)")
            .mark_line(point=True)
            .encode(
                x=alt.X("started_at:T", title=None, axis=TIME_AXIS),
                y=alt.Y("e2e_median_ms:Q", title="ms"),
                color="series:N",
                row=alt.Row("kind:N", title=None, header=alt.Header(labelOrient="top", labelFontWeight="bold")),
            )
            .properties(width=560, height=160)
            .resolve_scale(y="independent"),
        )
    )

    top_types = ops.groupby("op_type").median_ms.max().sort_values(ascending=False).head(5).index.tolist()
    op_hist = wh.query(
        "SELECT r.started_at, r.target, s.op_type, s.median_ms FROM op_stats s JOIN runs r USING (run_id) WHERE r.variant = ? AND list_contains(?, s.op_type) ORDER BY r.started_at",
        [variant_key, top_types],
    )
    figures.append(
        (
            "operator_history",
            alt.Chart(op_hist, title="History of the top operators")
            .mark_line(point=True)
            .encode(
                x=alt.X("started_at:T", title=None, axis=TIME_AXIS),
                y=alt.Y("median_ms:Q", title="ms"),
                color=alt.Color("op_type:N", legend=alt.Legend(labelLimit=360)),
                row=alt.Row("target:N", title=None),
            )
            .properties(width=420, height=120)
            .resolve_scale(y="independent"),
        )
    )

    # Kernel view and data movement of each current run.
    kern = wh.query(
        "SELECT r.target, k.kernel_family, count(*) AS op_types, round(sum(s.median_ms), 3) AS ms FROM kernels k JOIN op_stats s USING (run_id, op_type) JOIN current_runs r USING (run_id) WHERE r.variant = ? GROUP BY ALL ORDER BY r.target, k.kernel_family",
        [variant_key],
    )
    sections.append(
        (
            "Kernel view",
            "Kernel families from operator names: `kleidiai-sme2` = KleidiAI packed kernels chosen only with SME2 (PF32, PQS8), `kleidiai` = other KleidiAI packed types, `xnnpack` = plain XNNPACK kernels, `portable` = not delegated.\n\n"
            + _md(kern),
        )
    )
    dm_rows, dm_text = [], []
    for r in runs.itertuples():
        try:
            loaded = session.load_run(Path(r.run_dir))
            dm = datamovement.analyze(
                loaded.trace.rows,
                ProgramMap.load(Path(r.run_dir)) if (Path(r.run_dir) / "program_map.json").exists() else None,
            )
        except Sme2Error:
            continue
        dm_text.append(
            f"- **{r.target}** (t{r.threads}{', emulated' if r.emulated else ''}): {dm.sentence}. Delegation: {dm.health['delegated_ops']} delegated / {dm.health['portable_ops']} portable operators in {dm.health['delegate_partitions']} partitions; quantize/convert {100 * dm.health['quant_share']:.1f}% of runtime."
        )
        dm_rows += [
            {
                "target": r.target + (" (emulated)" if r.emulated else ""),
                "module": h.module,
                "count": h.count,
                "ms": h.ms,
            }
            for h in dm.hotspots.head(6).itertuples()
        ]
    sections.append(("Data movement", "\n".join(dm_text) or "_no run folders available_"))
    if dm_rows:
        figures.append(
            (
                "transpose_hotspots",
                alt.Chart(
                    pd.DataFrame(dm_rows),
                    title="Data-movement hotspots: modules causing transposes and copies (ms per inference)",
                )
                .mark_bar()
                .encode(
                    y=alt.Y("module:N", sort="-x", title=None, axis=alt.Axis(labelLimit=360)),
                    x=alt.X("ms:Q", title="ms per inference"),
                    color=alt.value(charts.COLORS["Data Movement"]),
                    row=alt.Row("target:N", title=None),
                    tooltip=["target", "module", "count", "ms"],
                )
                .properties(width=420)
                # One panel per target: times of different targets never add up in one bar.
                .resolve_scale(x="independent", y="independent"),
            )
        )

    reg = wh.query(
        "SELECT g.run_id, r.target, g.scope, g.op_type, round(g.baseline_median_ms, 4) AS baseline_ms, round(g.new_median_ms, 4) AS new_ms, round(100 * g.change, 1) AS change_pct, g.q_value, g.p_value FROM regressions g JOIN current_runs r USING (run_id) WHERE r.variant = ? AND g.significant ORDER BY abs(g.change) DESC LIMIT 20",
        [variant_key],
    )
    sections.append(
        (
            "Regressions",
            "Newest run vs the previous runs of the same key (Mann-Whitney U, Benjamini-Hochberg across operators, minimum effect 5%; emulated runs are compared on kernels and operator mix only).\n\n"
            + (_md(reg) if not reg.empty else "_no significant change in the current runs_"),
        )
    )

    pngs = []
    for name, chart in figures:
        pngs.append(charts.save_image(chart, out_dir / f"{name}.{image_format}"))
    md = [
        f"# {variant_key}: SME2 profiling report",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {wh.path}. Runs: {', '.join(f'`{r}`' for r in run_ids)}.",
    ]
    if runs.emulated.any():
        md.append(
            "> Targets marked emulated ran on QEMU's emulated Armv9 CPU: kernel selection and operator mix are real; their times are not hardware times and are never compared with hardware runs."
        )
    for title, text in sections:
        md.append(f"## {title}\n\n{text}")
    # The Markdown shows the PNG copies; the HTML page draws the same charts itself (Vega inlined),
    # so it stays self-contained when moved away from the PNGs.
    page = (
        atomic.write_text(out_dir / "report.html", _html("\n\n".join(md), figures, f"{variant_key}: SME2 report"))
        if html_page
        else None
    )
    md.append("## Charts\n\n" + "\n\n".join(f"![{p.stem}]({p.name})" for p in pngs))
    markdown = atomic.write_text(out_dir / "report.md", "\n\n".join(md) + "\n")
    summary = "\n\n".join(s for s in (c.headline() for c in comps)) or "no SME2 pairs yet"
    return Report(markdown, page, pngs, summary, run_ids)


def _html(markdown_text: str, figures: list[tuple[str, alt.Chart]], title: str = "SME2 report") -> str:
    """One page: the report text, then every chart embedded with Vega inlined (no network)."""
    import vl_convert as vlc

    bundle = vlc.javascript_bundle()
    divs = "\n".join(
        f'<div id="chart-{i}" class="chart" title="{html.escape(name)}"></div>' for i, (name, _) in enumerate(figures)
    )
    embeds = "\n".join(
        f"vegaEmbed('#chart-{i}', {json.dumps(chart.to_dict())}, {{actions: false, renderer: 'svg'}}).catch(e => document.body.insertAdjacentHTML('beforeend', '<p class=err>' + e + '</p>'));"
        for i, (_, chart) in enumerate(figures)
    )
    try:
        import markdown as md_lib  # optional: nicer HTML when available

        body = md_lib.markdown(markdown_text, extensions=["tables"])
    except ImportError:
        body = f"<pre>{html.escape(markdown_text)}</pre>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}} .err{{color:red}} .chart{{margin:1.5em 0}}</style>
<script>{bundle}</script></head><body>{body}<h2>Charts</h2>{divs}<script>{embeds}</script></body></html>"""
