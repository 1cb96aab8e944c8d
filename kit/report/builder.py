"""Per model variant: a Markdown report and a self-contained HTML page (Vega inlined, renders
offline), with PNG copies of every chart. Every number comes from the warehouse (or the run folders
its rows were read from), with its run ids.

The sections follow Arm's reference performance report (its generate_report.py and report skill):
Executive summary; Environment and methodology (devices, CPU, versions, runner recipes and build
flags, iterations, warmups, pinning, emulated or not, how numbers are computed); Results (the
kit's latency table, SME2 on vs off per category and operator, dtypes, end to end, kernels, data
movement, portable vs delegated operators, regressions); Bottleneck analysis; Recommendations
(derived from the numbers by kit.analysis.advice); Artifacts (every file, with its path)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import altair as alt
import pandas as pd

from kit.analysis import advice, compare, datamovement, kernelview
from kit.core import atomic
from kit.core.errors import Sme2Error, WarehouseError
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.core.names import Variant
from kit.profile import armkit as runfiles
from kit.profile import session
from kit.report import charts
from kit.report import comparison as comparison_files
from kit.store import queries, views
from kit.store import variant as variant_reads
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
    snapshot: int | None = None  # the lab DuckLake snapshot read (sme2 report --at rebuilds it); None: no lake


def _percent(df: pd.DataFrame) -> pd.DataFrame:
    """share_of_execute (a fraction) as "% of execute", the way every table of the report shows shares."""
    return df.assign(**{"% of execute": 100 * df.share_of_execute}).drop(columns="share_of_execute")


def _number(value: float, percent: bool = False) -> str:
    """One way to print a number in the report: percentages with one decimal; times and other
    values with enough digits to tell a small one from zero (0.0004, not 0.000)."""
    if value != value:
        return "-"
    if percent:
        return f"{value:.1f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"{value:.3f}"
    return f"{value:.3g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_"
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            percent = "%" in str(col) or "pct" in str(col)
            out[col] = [_number(v, percent) for v in out[col]]
    return out.to_markdown(index=False, disable_numparse=True)


Result = tuple[str, str]  # a ### section of ## Results: (title, text)
Figure = tuple[str, alt.Chart]  # a chart: (file stem, chart)
NO_PAIR = "_no SME2 on/off pair yet: profile <device>.sme2-on and <device>.sme2-off_"


def build(
    root: DataRoot,
    variant_key: str,
    out_dir: Path | None = None,
    image_format: str = "png",
    html_page: bool = True,
    at: int | str | None = None,
) -> Report:
    """The report of one variant into `out_dir` (default reports/<variant>/): report.md with its
    charts as PNG (or SVG: smaller, for pages that publish the report) and, unless `html_page` is
    False, the self-contained report.html. In a lab, `at` reads the DuckLake as of that snapshot
    (or time), and the report names the snapshot it read. One function below per section, called
    in the order the report shows them."""
    if image_format not in ("png", "svg"):
        raise Sme2Error(f"unknown image format {image_format!r}", "use png or svg")
    v = Variant.parse(variant_key)
    wh = Warehouse.at(root, at)
    snapshot = wh.lake_snapshot()
    runs = variant_reads.current_runs(wh, variant_key)
    if runs.empty:
        raise Sme2Error(
            f"no runs of {variant_key} in the warehouse",
            f"profile it first: sme2 profile --model {v.model} --dtype {v.dtype}",
        )
    out_dir = Path(out_dir) if out_dir is not None else root.report_path(variant_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_ids = runs.run_id.tolist()
    comps = _comparisons(wh, variant_key, runs)
    folders = {c.b.run_id: comparison_files.write(root, c).folder for c in comps}
    ops_all = views.op_stats(wh, run_ids)
    loaded = _data_movement(runs)
    focus_ids, facts, findings = _advice(wh, runs, comps, ops_all, loaded)

    results: list[Result] = [_latency_section(wh, comps, run_ids), _pair_section(comps)]
    results += _dtype_section(wh, v, comps)
    e2e_result, e2e_figure = _e2e_section(variant_key, runs)
    results.append(e2e_result)
    figures: list[Figure] = [e2e_figure, *_category_figures(wh, variant_key, runs)]
    ops = variant_reads.op_medians(wh, variant_key)
    figures += [_top_operators_figure(ops, runs), *_history_figures(wh, variant_key, ops)]
    results += _kernel_sections(wh, variant_key)
    dm_result, dm_figures = _data_movement_section(runs, loaded)
    results.append(dm_result)
    figures += dm_figures
    results.append(("Portable vs delegated operators", _md(_delegation_table(runs, ops_all))))
    results += _module_section(wh, variant_key)
    results.append(_regression_section(wh, variant_key))
    pngs = [charts.save_image(chart, out_dir / f"{name}.{image_format}") for name, chart in figures]

    # Findings are labelled with the run's target and thread count (two runs may share a target).
    target_of = {r.run_id: f"{r.target} t{r.threads}" for r in runs.itertuples()}
    recs = [(target_of[i], f) for i in focus_ids for f in findings[i]]
    sections = [
        ("Executive summary", _summary(comps, runs, recs)),
        ("Environment and methodology", _environment(root, runs, comps)),
        ("Results", "\n\n".join(f"### {t}\n\n{x}" for t, x in results)),
        ("Bottleneck analysis", _bottlenecks(facts, target_of)),
        ("Recommendations", _recommendations(recs)),
        ("Artifacts", _artifacts(root, out_dir, runs, folders, pngs)),
    ]
    header = _header(wh, variant_key, runs, snapshot)
    markdown, page = _write(variant_key, header, sections, figures, pngs, out_dir, html_page)
    summary = "\n\n".join(s for s in (c.headline() for c in comps)) or "no SME2 pairs yet"
    return Report(markdown, page, pngs, summary, run_ids, snapshot)


def _comparisons(wh: Warehouse, variant_key: str, runs: pd.DataFrame) -> list[compare.Comparison]:
    """The SME2 on/off comparison of each device with a pair (devices without one are skipped)."""
    comps = []
    for dev in runs.device.unique():
        try:
            comps.append(compare.compare(wh, variant_key, dev))
        except Sme2Error:
            continue
    return comps


def _data_movement(runs: pd.DataFrame) -> dict[str, datamovement.DataMovement]:
    """Each run's folder read once: the data-movement analysis of its trace rows (the advice needs
    them too); runs whose folder cannot be read are left out."""
    loaded: dict[str, datamovement.DataMovement] = {}
    for r in runs.itertuples():
        try:
            trace = session.load_run(Path(r.run_dir)).trace
            pmap = ProgramMap.load(Path(r.run_dir)) if (Path(r.run_dir) / "program_map.json").exists() else None
            loaded[r.run_id] = datamovement.analyze(trace.rows, pmap)
        except Sme2Error:
            continue
    return loaded


def _advice(wh: Warehouse, runs: pd.DataFrame, comps: list, ops_all: pd.DataFrame, loaded: dict):
    """The runs the advice is about (the SME2-on side of each pair, the case study's view, else
    every run), the facts the rules read about each, and the findings: (focus ids, facts, findings)."""
    run_ids = runs.run_id.tolist()
    focus_ids = [c.b.run_id for c in comps if c.b.run_id in loaded] or [i for i in run_ids if i in loaded]
    by_b = {c.b.run_id: c for c in comps}
    cats_all = views.category_stats(wh, run_ids, "blog")
    facts = {i: _facts(runs[runs.run_id == i].iloc[0], ops_all, cats_all, loaded[i], by_b.get(i)) for i in focus_ids}
    findings = {i: advice.recommend(f) for i, f in facts.items()}
    return focus_ids, facts, findings


def _latency_section(wh: Warehouse, comps: list, run_ids: list[str]) -> Result:
    """The kit's latency table (generate_report.py): median, mean, min, max, std dev, speedup."""
    lat = views.latency_samples(wh, run_ids, "timing")
    body = []
    for c in comps:
        body.append(f"#### {c.device} ({c.threads} thread(s), size {c.size})\n\n{_md(_latency_table(c, lat))}")
    return (
        "Latency comparison (SME2-On vs SME2-Off)",
        (
            "End-to-end latency of the timing runs (warmups excluded), per iteration. Speedup = SME2-Off / SME2-On."
            + (" Emulated pairs show times only." if any(c.emulated for c in comps) else "")
            + "\n\n"
            + "\n\n".join(body)
        )
        if body
        else NO_PAIR,
    )


def _pair_section(comps: list) -> Result:
    """Per SME2 pair: the headline, the blog's category table (estimated cycles first on counted
    emulated pairs), the bottleneck each side, and the operator table."""
    body = []
    for c in comps:
        label = (
            " — **EMULATED: kernels and operator mix are real, times are not hardware times; no speedups shown**"
            if c.emulated
            else ""
        )
        counted = compare.counts_table(c)
        if counted is not None:
            label += (
                f"\n\nEstimated cycles from the instructions the emulated CPU retired (deterministic; cycles "
                f"estimated for {c.counts_execute['cost_model']}, not hardware time):\n\n{_md(counted)}\n\n"
                "Emulated times and kernels:"
            )
        body.append(
            f"#### {c.device} ({c.threads} thread(s), size {c.size}){label}\n\n{c.headline()}\n\n{_md(compare.blog_table(c))}\n\nBottleneck: {c.bottleneck['a']} with SME2 off, {c.bottleneck['b']} with SME2 on. Runs: off `{c.a.run_id}`, on `{c.b.run_id}`."
        )
        body.append(
            f"Operators (SME2 off vs on, kernel families from op names):\n\n{_md(compare.operator_table(c, 12))}"
        )
    return ("SME2 on vs off", "\n\n".join(body) or NO_PAIR)


def _dtype_section(wh: Warehouse, v: Variant, comps: list) -> list[Result]:
    """The blog puts INT8 and FP16 side by side; show those first, then any other dtype measured on
    this device, and only when there are two or more (one dtype repeats the table above)."""
    dtypes = ("int8", "fp16", "fp32", "int8-dynamic")
    side = compare.dtype_side_by_side(wh, v.model, comps[0].a.device, dtypes) if comps else pd.DataFrame()
    if sum(col.endswith(" share on") for col in side.columns) >= 2:
        return [("Dtypes side by side", f"Device {comps[0].a.device}:\n\n{_md(side)}")]
    return []


def _e2e_section(variant_key: str, runs: pd.DataFrame) -> tuple[Result, Figure]:
    """End-to-end latency per target and thread count: the table, and its chart with hardware and
    emulated in separate panels."""
    e2e = runs[["target", "threads", "emulated", "e2e_median_ms", "e2e_ci_low_ms", "e2e_ci_high_ms"]].copy()
    e2e["label"] = e2e.target + " t" + e2e.threads.astype(str) + e2e.emulated.map({True: " (emulated)", False: ""})
    result = ("End to end", _md(e2e.drop(columns=["label"])))
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
    figure = (
        "e2e",
        bars.facet(
            row=alt.Row("kind:N", title=None, header=alt.Header(labelOrient="top", labelFontWeight="bold")),
            title=f"{variant_key}: end-to-end latency, SME2 on vs off per device and thread count",
        ).resolve_scale(x="independent", y="independent"),
    )
    return result, figure


def _category_figures(wh: Warehouse, variant_key: str, runs: pd.DataFrame) -> list[Figure]:
    """The category breakdown per target: hardware times, and for emulated targets estimated
    cycles when every one was counted (emulated milliseconds are never drawn as speed), else
    their times marked EMULATED."""
    cats = variant_reads.category_times(wh, variant_key)
    cats["label"] = cats.target + " t" + cats.threads.astype(str)
    counted = variant_reads.category_cycles(wh, variant_key)
    counted["label"] = counted.target + " t" + counted.threads.astype(str)
    figures = []
    for emulated, group in cats.assign(emulated=cats.target.map(dict(zip(runs.target, runs.emulated)))).groupby(
        "emulated"
    ):
        if emulated and set(group.label) <= set(counted.label):
            chart = charts.category_bars(
                counted[counted.label.isin(group.label)],
                f"{variant_key}: estimated cycles per category (emulated CPU's instruction counts; not hardware time)",
                value="est_cycles",
                axis_title="estimated cycles per inference",
            )
        else:
            chart = charts.category_bars(
                group, f"{variant_key}: category breakdown per target" + (" (EMULATED times)" if emulated else "")
            )
        figures.append(("categories_emulated" if emulated else "categories", chart))
    return figures


def _top_operators_figure(ops: pd.DataFrame, runs: pd.DataFrame) -> Figure:
    """The eight slowest operator types of each target (median ms), one panel per target."""
    top_ops = ops.sort_values("median_ms", ascending=False).groupby("target").head(8)
    emulated_targets = set(runs.target[runs.emulated])
    top_ops["target"] = [t + (" (emulated)" if t in emulated_targets else "") for t in top_ops.target]
    return (
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


def _history_figures(wh: Warehouse, variant_key: str, ops: pd.DataFrame) -> list[Figure]:
    """The history of the end-to-end median (emulated and hardware in separate panels), and of
    the five slowest operator types."""
    hist = variant_reads.e2e_history(wh, variant_key)
    hist["series"] = hist.target + " t" + hist.threads.astype(str) + " " + hist["size"]
    hist["kind"] = hist.emulated.map(KIND)
    e2e = (
        alt.Chart(hist, title="History of the end-to-end median (emulated and hardware never share a panel)")
        .mark_line(point=True)
        .encode(
            x=alt.X("started_at:T", title=None, axis=TIME_AXIS),
            y=alt.Y("e2e_median_ms:Q", title="ms"),
            color="series:N",
            row=alt.Row("kind:N", title=None, header=alt.Header(labelOrient="top", labelFontWeight="bold")),
        )
        .properties(width=560, height=160)
        .resolve_scale(y="independent")
    )
    top_types = ops.groupby("op_type").median_ms.max().sort_values(ascending=False).head(5).index.tolist()
    op_hist = variant_reads.op_history(wh, variant_key, top_types)
    operators = (
        alt.Chart(op_hist, title="History of the top operators")
        .mark_line(point=True)
        .encode(
            x=alt.X("started_at:T", title=None, axis=TIME_AXIS),
            y=alt.Y("median_ms:Q", title="ms"),
            color=alt.Color("op_type:N", legend=alt.Legend(labelLimit=360)),
            row=alt.Row("target:N", title=None),
        )
        .properties(width=420, height=120)
        .resolve_scale(y="independent")
    )
    return [("history", e2e), ("operator_history", operators)]


def _kernel_sections(wh: Warehouse, variant_key: str) -> list[Result]:
    """The kernel families of each current run, and (when kernel-log runs exist) the microkernel
    names per GEMM/convolution operator, SME2 on beside off."""
    kern = variant_reads.kernel_families(wh, variant_key)
    results = [
        (
            "Kernel view",
            "Kernel families from operator names: `kleidiai-sme2` = KleidiAI packed kernels chosen only with SME2 (PF32, PQS8), `kleidiai` = other KleidiAI packed types, `xnnpack` = plain XNNPACK kernels, `portable` = not delegated. Per SME2 pair, the kit's `kernel_view_gemm.md` is in its comparison folder (see Artifacts).\n\n"
            + _md(kern),
        )
    ]
    with contextlib.suppress(WarehouseError):
        micro = kernelview.side_by_side(wh, variant_key)
        micro = micro[(micro.on_microkernel != "-") | (micro.off_microkernel != "-")]
        if not micro.empty:
            results.append(
                (
                    "Microkernels (kernel-log runs)",
                    "The XNNPACK microkernel each GEMM/convolution operator ran, SME2 on beside SME2 off "
                    "(`...__neonsme2` = SME2, `...__neon...` = plain NEON), from the kernel-log runner's output.\n\n"
                    + _md(micro.drop(columns=["on_ms", "off_ms"])),
                )
            )
    return results


def _data_movement_section(runs: pd.DataFrame, loaded: dict) -> tuple[Result, list[Figure]]:
    """Data movement of each current run: a sentence and its delegation health, and a chart of the
    modules causing transposes and copies (none when no run folder could be read)."""
    dm_rows, dm_text = [], []
    for r in runs.itertuples():
        dm = loaded.get(r.run_id)
        if dm is None:
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
    result = ("Data movement", "\n".join(dm_text) or "_no run folders available_")
    if not dm_rows:
        return result, []
    chart = (
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
        .resolve_scale(x="independent", y="independent")
    )
    return result, [("transpose_hotspots", chart)]


def _module_section(wh: Warehouse, variant_key: str) -> list[Result]:
    """Time per nn.Module (the named query module-totals): the eight slowest of each target and
    thread count; no section when no module is known."""
    mods = queries.run(wh, "module-totals", {"variant": variant_key})
    if mods.empty:
        return []
    top = mods.groupby(["target", "threads"], sort=False).head(8)
    return [
        (
            "Time by module",
            "Each operator counted once, in its nn.Module (from the ETRecord's nn_module_stack; XNNPACK's "
            "operators by their position in their delegate call), median per inference; emulated rows are "
            "emulated times.\n\n"
            + _md(top.drop(columns=["run_id"]).rename(columns={"pct_of_execute": "% of execute"})),
        )
    ]


def _regression_section(wh: Warehouse, variant_key: str) -> Result:
    """The significant slowdowns the regression gate stored for the current runs."""
    reg = variant_reads.slowdowns(wh, variant_key)
    return (
        "Regressions",
        "Slowdowns of the newest run against the previous runs of the same key (one-sided Mann-Whitney U, Benjamini-Hochberg across operators, minimum effect 5% and 0.05 ms, for an operator also 0.5% of end to end; faster runs are never listed here; emulated runs are compared on kernels, operator mix and instruction counts).\n\n"
        + (_md(reg) if not reg.empty else "_no significant change in the current runs_"),
    )


def _header(wh: Warehouse, variant_key: str, runs: pd.DataFrame, snapshot: int | None) -> list[str]:
    """The title, what the report was generated from (and the lake snapshot it read), and the
    warning when some targets are emulated."""
    lake_read = (
        f" and the lab DuckLake at snapshot {snapshot} (sme2 report --at {snapshot} rebuilds this)"
        if snapshot is not None
        else ""
    )
    run_ids = runs.run_id.tolist()
    md = [
        f"# {variant_key}: SME2 Performance Report",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from {wh.path}{lake_read}. Runs: {', '.join(f'`{r}`' for r in run_ids)}.",
    ]
    if runs.emulated.any():
        md.append(
            "> Targets marked emulated ran on QEMU's emulated Armv9 CPU: kernel selection and operator mix are real; their times are not hardware times and are never compared with hardware runs."
        )
    return md


def _write(
    variant_key: str,
    header: list[str],
    sections: list[tuple[str, str]],
    figures: list[Figure],
    pngs: list[Path],
    out_dir: Path,
    html_page: bool,
) -> tuple[Path, Path | None]:
    """report.html (unless not `html_page`) and report.md: the header, the ## sections, and in the
    Markdown the chart images. Returns (markdown path, page path or None)."""
    md = [*header, *(f"## {title}\n\n{text}" for title, text in sections)]
    # The Markdown shows the PNG copies; the HTML page draws the same charts itself (Vega inlined),
    # so it stays self-contained when moved away from the PNGs.
    # Every value in the text (run.json fields, op types, module names) is data, never markup.
    md = [escape_markdown(block) for block in md]
    page = (
        atomic.write_text(out_dir / "report.html", _html("\n\n".join(md), figures, f"{variant_key}: SME2 report"))
        if html_page
        else None
    )
    md.append("## Charts\n\n" + "\n\n".join(f"![{p.stem}]({p.name})" for p in pngs))
    markdown = atomic.write_text(out_dir / "report.md", "\n\n".join(md) + "\n")
    return markdown, page


def _facts(run, ops_all: pd.DataFrame, cats_all: pd.DataFrame, dm: datamovement.DataMovement, comparison):
    """What the advice rules read about one run, from its warehouse rows and data-movement analysis."""
    cats = cats_all[cats_all.run_id == run.run_id]
    return advice.Facts(
        run_id=run.run_id,
        target=run.target,
        dtype=run.dtype,
        sme2=bool(run.sme2),
        emulated=bool(run.emulated),
        e2e_median_ms=float(run.e2e_median_ms),
        e2e_cv_percent=_float(run.e2e_cv_percent),
        coverage=_float(run.coverage),
        shares={c: float(x) for c, x in zip(cats.category, cats.share_of_execute)},
        op_stats=ops_all[ops_all.run_id == run.run_id],
        dm=dm,
        comparison=comparison,
    )


def _float(x) -> float:
    return float(x) if x is not None and x == x else float("nan")


def _latency_table(c: compare.Comparison, lat: pd.DataFrame) -> pd.DataFrame:
    """generate_report.py's table: Median, Mean, Min, Max latency and Std Dev, SME2-On vs SME2-Off."""
    on = lat[lat.run_id == c.b.run_id].latency_ms
    off = lat[lat.run_id == c.a.run_id].latency_ms
    unit = " (emulated)" if c.emulated else ""
    rows = []
    for name, fn in (("Median", "median"), ("Mean", "mean"), ("Min", "min"), ("Max", "max")):
        a, b = float(getattr(off, fn)()), float(getattr(on, fn)())
        rows.append(
            {
                "Metric": f"{name} Latency",
                f"SME2-On{unit}": f"{b:.3f} ms",
                f"SME2-Off{unit}": f"{a:.3f} ms",
                "Speedup": "-" if c.emulated or b <= 0 else f"{a / b:.2f}x",
            }
        )
    rows.append(
        {
            "Metric": "Std Dev",
            f"SME2-On{unit}": f"{float(on.std()):.3f} ms",
            f"SME2-Off{unit}": f"{float(off.std()):.3f} ms",
            "Speedup": "-",
        }
    )
    return pd.DataFrame(rows)


def _summary(comps: list, runs: pd.DataFrame, recs: list) -> str:
    lines = []
    for c in comps:
        on = c.categories.set_index("category")
        largest = c.bottleneck["b"]
        shift = (
            f"the largest category moves from {c.bottleneck['a']} to {largest}"
            if c.bottleneck["a"] != c.bottleneck["b"]
            else f"{largest} stays the largest category"
        )
        lines.append(
            f"- **{c.device}**{' (emulated)' if c.emulated else ''}: {c.headline()}; with SME2 on {shift} "
            f"({100 * on.share_b[largest]:.0f}% of runtime)."
        )
    paired = {c.a.run_id for c in comps} | {c.b.run_id for c in comps}
    for r in runs[~runs.run_id.isin(paired)].itertuples():
        lines.append(
            f"- **{r.target}**, {r.threads} thread(s){' (emulated)' if r.emulated else ''}: end-to-end median "
            f"{r.e2e_median_ms:.3f} ms (95% CI {r.e2e_ci_low_ms:.3f}-{r.e2e_ci_high_ms:.3f}); no SME2 pair on this device."
        )
    if recs:
        lines.append("\nTop findings:\n")
        lines += [f"{i}. **{t}**: {f.text}" for i, (t, f) in enumerate(recs[:3], 1)]
    return "\n".join(lines)


def _runner_manifests(root: DataRoot) -> dict[str, dict]:
    """Runner build manifests by binary sha256 (recipe, flags, CMake arguments, compiler)."""
    out = {}
    for m in sorted(root.runners.glob("*/manifest.json")):
        try:
            data = read_json(m, "the runner build")
        except Sme2Error:
            continue
        if isinstance(data, dict) and data.get("binary_sha256"):
            out[data["binary_sha256"]] = {**data, "folder": str(m.parent)}
    return out


def _environment(root: DataRoot, runs: pd.DataFrame, comps: list) -> str:
    table = []
    for r in runs.itertuples():
        cond = json.loads(r.conditions) if isinstance(r.conditions, str) else {}
        table.append(
            {
                "run": r.run_id,
                "target": r.target,
                "platform": r.platform,
                "CPU": r.cpu_model or cond.get("machine") or "-",
                "emulated": "yes (QEMU)" if r.emulated else "no",
                "threads": r.threads,
                "pinning": f"CPUs {cond['affinity']}" if cond.get("affinity") else "none",
                "iterations": r.iterations,
                "warmup": r.warmup,
                "runner": f"{r.runner} ({r.runner_recipe or '-'})",
                "executorch": r.executorch_version or "-",
                "torch": r.torch_version or "-",
            }
        )
    builds = _runner_manifests(root)
    recipe_lines = []
    for sha in dict.fromkeys(runs.runner_sha256.fillna("")):
        if not sha:
            recipe_lines.append("- pybind runner: the executorch wheel's Python runtime in a child process (no build)")
            continue
        m = builds.get(sha)
        if m is None:
            recipe_lines.append(f"- runner `{sha[:12]}`: build manifest not found under {root.runners}")
            continue
        flags = " ".join(m.get("flags") or []) or "-"
        cmake = " ".join(str(a) for a in (m.get("cmake_args") or [])) or "-"
        recipe_lines.append(
            f"- runner `{sha[:12]}`: recipe `{m.get('recipe')}` for {m.get('platform')}, executorch "
            f"{m.get('executorch_version')}, {m.get('compiler_version') or m.get('compiler')}; flags `{flags}`; "
            f"CMake `{cmake}`; built {m.get('built_at')} in `{m['folder']}`"
        )
    pairs = [c for c in comps if c.a.run_id and c.b.run_id]
    interleaved = any(
        "pair_session" in (json.loads(x) if isinstance(x, str) else {}) for x in runs.conditions.fillna("{}")
    )
    method = [
        "- Each run is a timing-only run (end-to-end latency per iteration) plus an ETDump run (per-operator events), "
        "both on the same program and inputs; warmup iterations are excluded from every statistic.",
        "- End-to-end numbers are medians of the timing run with a 95% percentile-bootstrap interval; operator and "
        "category numbers are medians over iterations of per-iteration sums, and shares are of Method::execute.",
        "- Categories follow the case study's five (Convolution, GEMM, Data Movement, Elementwise, Other) by the rules "
        "in kit/stats/data/categories.toml (plus $SME2_HOME/categories.toml when present).",
        "- SME2 speedups are SME2-off median / SME2-on median with a bootstrap interval over both runs' samples"
        + (
            "; on and off runs of a device were measured interleaved in blocks (one pair session) so drift hits both alike."
            if interleaved
            else "."
        ),
        "- Emulated targets run under QEMU (`-cpu max` with SME2 on, `-cpu max,sme=off` off): kernel selection and "
        "operator mix are real, times are not hardware times, so no speedups are computed for them."
        if runs.emulated.any()
        else "- All targets are hardware (no emulation).",
    ]
    if not pairs:
        method.append("- No SME2 on/off pair has been measured for this variant yet.")
    return (
        "### Devices and runs\n\n"
        + _md(pd.DataFrame(table))
        + "\n\n### Runner recipes and build flags\n\n"
        + "\n".join(recipe_lines)
        + "\n\n### Methodology\n\n"
        + "\n".join(method)
    )


def _delegation_table(runs: pd.DataFrame, ops_all: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in runs.itertuples():
        ops = ops_all[ops_all.run_id == r.run_id]
        port = ops[~ops.delegated.astype(bool)]
        dele = ops[ops.delegated.astype(bool)]
        top = port.sort_values("median_ms", ascending=False).head(3)
        rows.append(
            {
                "target": r.target + (" (emulated)" if r.emulated else ""),
                "threads": r.threads,
                "delegated op types": len(dele),
                "delegated % of execute": round(100 * float(dele.share_of_execute.sum()), 1),
                "portable op types": len(port),
                "portable % of execute": round(100 * float(port.share_of_execute.sum()), 1),
                "slowest portable": ", ".join(
                    f"{o} ({100 * s:.1f}%)" for o, s in zip(top.op_type, top.share_of_execute)
                )
                or "-",
            }
        )
    return pd.DataFrame(rows)


def _bottlenecks(facts: dict, target_of: dict) -> str:
    if not facts:
        return "_no run folders available to analyse_"
    parts = []
    for run_id, f in facts.items():
        shares = sorted(f.shares.items(), key=lambda kv: kv[1], reverse=True)
        cat_line = ", ".join(f"{c} {100 * s:.1f}%" for c, s in shares)
        dm = f.dm
        t_frac = dm.transposes["ms"] / dm.health["data_movement_ms"] if dm.health["data_movement_ms"] > 0 else 0.0
        parts.append(
            f"### {target_of[run_id]}{' (emulated)' if f.emulated else ''}, run `{run_id}`\n\n"
            f"Share of runtime by category: {cat_line}.\n\n"
            f"Operators above {100 * advice.PORTABLE_OP_SHARE:.0f}% of runtime (at least the top 5):\n\n"
            f"{_md(advice.bottlenecks(f))}\n\n"
            f"Data movement: {100 * f.shares.get('Data Movement', 0.0):.1f}% of runtime, of which transposes "
            f"{100 * t_frac:.0f}% ({dm.transposes['count']} per inference). Modules causing them:\n\n"
            f"{_md(_percent(dm.hotspots.head(6)))}"
        )
    return "\n\n".join(parts)


def _recommendations(recs: list) -> str:
    if not recs:
        return "_nothing above the thresholds (kit/analysis/advice.py): no category or operator stands out_"
    return "Derived from the numbers above by the rules in kit/analysis/advice.py, heaviest first.\n\n" + "\n".join(
        f"{i}. **{t}**: {f.text}" for i, (t, f) in enumerate(recs, 1)
    )


def _artifacts(root: DataRoot, out_dir: Path, runs: pd.DataFrame, folders: dict, pngs: list[Path]) -> str:
    lines = [
        f"- Report: `{out_dir / 'report.md'}`, `{out_dir / 'report.html'}` (self-contained)",
        f"- Charts: {', '.join(f'`{p}`' for p in pngs)}",
        f"- Warehouse: `{root.warehouse}` (tables runs, op_events, op_stats, category_stats, kernels, latency_samples)",
        "",
        "| run | target | run folder | Arm kit files |",
        "|-----|--------|------------|---------------|",
    ]
    for r in runs.itertuples():
        folder = Path(r.run_dir)
        stem = ""
        try:
            stem = json.loads((folder / "run.json").read_text()).get("stem", "")
        except (OSError, ValueError):
            pass
        kit = [n for n in runfiles.file_names(stem).values() if stem and (folder / n).exists()]
        kit += [n for n in ("manifest.json", "metrics.json", "analysis_summary.json") if (folder / n).exists()]
        kit += sorted(p.name for p in folder.glob("*_pipeline_summary.*")) if folder.is_dir() else []
        lines.append(f"| `{r.run_id}` | {r.target} | `{folder}` | {', '.join(f'`{n}`' for n in kit) or '-'} |")
    if folders:
        lines.append("")
        lines.append(
            "Comparison folders (SME2 off vs on; Arm kit files `*_comparison.csv`, `kernel_view_gemm.md`, ...):"
        )
        lines.append("")
        lines += [f"- `{f}`" for f in folders.values()]
    return "\n".join(lines)


_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def escape_markdown(text: str) -> str:
    """Markdown whose values cannot become HTML: every `<` outside code spans is written `&lt;`
    (inside a code span it is shown as typed and never parsed). Markdown's own `>` (quotes) stays."""
    out, last = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(text[last : m.start()].replace("<", "&lt;"))
        out.append(m.group(0))
        last = m.end()
    out.append(text[last:].replace("<", "&lt;"))
    return "".join(out)


def script_json(obj) -> str:
    """JSON for inside a <script> element: no string in it can close the element or open a comment
    (`<`, `>` and `&` as JSON escapes, which JavaScript reads back as the same characters)."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _html(markdown_text: str, figures: list[tuple[str, alt.Chart]], title: str = "SME2 report") -> str:
    """One page: the report text, then every chart embedded with Vega inlined (no network). Its
    Content-Security-Policy allows exactly its own two scripts (by hash; Vega compiles its
    expressions, hence 'unsafe-eval'), no other script, no network, and raw HTML in the text is
    never passed through: a crafted name shows as text."""
    import vl_convert as vlc

    bundle = vlc.javascript_bundle()
    divs = "\n".join(
        f'<div id="chart-{i}" class="chart" title="{html.escape(name)}"></div>' for i, (name, _) in enumerate(figures)
    )
    embeds = "\n".join(
        f"vegaEmbed('#chart-{i}', {script_json(chart.to_dict())}, {{actions: false, renderer: 'svg'}})"
        ".catch(e => { const p = document.createElement('p'); p.className = 'err'; p.textContent = String(e);"
        " document.body.appendChild(p); });"
        for i, (_, chart) in enumerate(figures)
    )
    try:
        import markdown as md_lib  # optional: nicer HTML when available

        converter = md_lib.Markdown(extensions=["tables"])
        converter.preprocessors.deregister("html_block")  # raw HTML is text, never markup
        converter.inlinePatterns.deregister("html")
        body = converter.convert(markdown_text)
    except ImportError:
        body = f"<pre>{html.escape(markdown_text)}</pre>"
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()}'" for js in (bundle, embeds)
    )
    csp = f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; font-src data:"
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px}} .err{{color:red}} .chart{{margin:1.5em 0}}</style>
<script>{bundle}</script></head><body>{body}<h2>Charts</h2>{divs}<script>{embeds}</script></body></html>"""
