"""The ### sections of the report's Results and its charts, one function each, from the warehouse's
rows of one variant (kit.report.builder calls them in the order the report shows them)."""

from __future__ import annotations

import contextlib

import altair as alt
import pandas as pd

from kit.analysis import compare, kernelview
from kit.core.errors import WarehouseError
from kit.core.names import Variant
from kit.report import charts
from kit.report.render import md_table
from kit.store import queries, views
from kit.store import variant as variant_reads
from kit.store.warehouse import Warehouse

# Chart panels: emulated and hardware times never share an axis.
KIND = {False: "hardware", True: "emulated (QEMU: not hardware times)"}


# History axes: dates a reader can read, whether the runs span seconds or months.
TIME_AXIS = alt.Axis(format="%b %d %H:%M", labelAngle=-30, tickCount=6, labelOverlap=True)


Result = tuple[str, str]  # a ### section of ## Results: (title, text)


Figure = tuple[str, alt.Chart]  # a chart: (file stem, chart)


NO_PAIR = "_no SME2 on/off pair yet: profile <device>.sme2-on and <device>.sme2-off_"


def latency_section(wh: Warehouse, comps: list, run_ids: list[str]) -> Result:
    """The kit's latency table (generate_report.py): median, mean, min, max, std dev, speedup."""
    lat = views.latency_samples(wh, run_ids, "timing")
    body = []
    for c in comps:
        body.append(f"#### {c.device} ({c.threads} thread(s), size {c.size})\n\n{md_table(latency_table(c, lat))}")
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


def latency_table(c: compare.Comparison, lat: pd.DataFrame) -> pd.DataFrame:
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


def pair_section(comps: list) -> Result:
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
                f"estimated for {c.counts_execute['cost_model']}, not hardware time):\n\n{md_table(counted)}\n\n"
                "Emulated times and kernels:"
            )
        body.append(
            f"#### {c.device} ({c.threads} thread(s), size {c.size}){label}\n\n{c.headline()}\n\n{md_table(compare.blog_table(c))}\n\nBottleneck: {c.bottleneck['a']} with SME2 off, {c.bottleneck['b']} with SME2 on. Runs: off `{c.a.run_id}`, on `{c.b.run_id}`."
        )
        body.append(
            f"Operators (SME2 off vs on, kernel families from op names):\n\n{md_table(compare.operator_table(c, 12))}"
        )
    return ("SME2 on vs off", "\n\n".join(body) or NO_PAIR)


def dtype_section(wh: Warehouse, v: Variant, comps: list) -> list[Result]:
    """The blog puts INT8 and FP16 side by side; show those first, then any other dtype measured on
    this device, and only when there are two or more (one dtype repeats the table above)."""
    dtypes = ("int8", "fp16", "fp32", "int8-dynamic")
    side = compare.dtype_side_by_side(wh, v.model, comps[0].a.device, dtypes) if comps else pd.DataFrame()
    if sum(col.endswith(" share on") for col in side.columns) >= 2:
        return [("Dtypes side by side", f"Device {comps[0].a.device}:\n\n{md_table(side)}")]
    return []


def e2e_section(variant_key: str, runs: pd.DataFrame) -> tuple[Result, Figure]:
    """End-to-end latency per target and thread count: the table, and its chart with hardware and
    emulated in separate panels."""
    e2e = runs[["target", "threads", "emulated", "e2e_median_ms", "e2e_ci_low_ms", "e2e_ci_high_ms"]].copy()
    e2e["label"] = e2e.target + " t" + e2e.threads.astype(str) + e2e.emulated.map({True: " (emulated)", False: ""})
    result = ("End to end", md_table(e2e.drop(columns=["label"])))
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


def category_figures(wh: Warehouse, variant_key: str, runs: pd.DataFrame) -> list[Figure]:
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


def top_operators_figure(ops: pd.DataFrame, runs: pd.DataFrame) -> Figure:
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


def _history_chart(data: pd.DataFrame, title: str, y, color, row, width: int, height: int) -> alt.Chart:
    """Lines over time, a panel per `row`, each panel on its own y scale."""
    return (
        alt.Chart(data, title=title)
        .mark_line(point=True)
        .encode(x=alt.X("started_at:T", title=None, axis=TIME_AXIS), y=y, color=color, row=row)
        .properties(width=width, height=height)
        .resolve_scale(y="independent")
    )


def history_figures(wh: Warehouse, variant_key: str, ops: pd.DataFrame) -> list[Figure]:
    """The history of the end-to-end median (emulated and hardware in separate panels), and of
    the five slowest operator types."""
    hist = variant_reads.e2e_history(wh, variant_key)
    hist["series"] = hist.target + " t" + hist.threads.astype(str) + " " + hist["size"]
    hist["kind"] = hist.emulated.map(KIND)
    e2e = _history_chart(
        hist,
        "History of the end-to-end median (emulated and hardware never share a panel)",
        alt.Y("e2e_median_ms:Q", title="ms"),
        "series:N",
        alt.Row("kind:N", title=None, header=alt.Header(labelOrient="top", labelFontWeight="bold")),
        width=560,
        height=160,
    )
    top_types = ops.groupby("op_type").median_ms.max().sort_values(ascending=False).head(5).index.tolist()
    operators = _history_chart(
        variant_reads.op_history(wh, variant_key, top_types),
        "History of the top operators",
        alt.Y("median_ms:Q", title="ms"),
        alt.Color("op_type:N", legend=alt.Legend(labelLimit=360)),
        alt.Row("target:N", title=None),
        width=420,
        height=120,
    )
    return [("history", e2e), ("operator_history", operators)]


def kernel_sections(wh: Warehouse, variant_key: str) -> list[Result]:
    """The kernel families of each current run, and (when kernel-log runs exist) the microkernel
    names per GEMM/convolution operator, SME2 on beside off."""
    kern = variant_reads.kernel_families(wh, variant_key)
    results = [
        (
            "Kernel view",
            "Kernel families from operator names: `kleidiai-sme2` = KleidiAI packed kernels chosen only with SME2 (PF32, PQS8), `kleidiai` = other KleidiAI packed types, `xnnpack` = plain XNNPACK kernels, `portable` = not delegated. Per SME2 pair, the kit's `kernel_view_gemm.md` is in its comparison folder (see Artifacts).\n\n"
            + md_table(kern),
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
                    + md_table(micro.drop(columns=["on_ms", "off_ms"])),
                )
            )
    return results


def data_movement_section(runs: pd.DataFrame, loaded: dict) -> tuple[Result, list[Figure]]:
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


def delegation_section(runs: pd.DataFrame, ops_all: pd.DataFrame) -> Result:
    """Per run: delegated and portable operator types, their shares, and the slowest portable ones."""
    return ("Portable vs delegated operators", md_table(delegation_table(runs, ops_all)))


def delegation_table(runs: pd.DataFrame, ops_all: pd.DataFrame) -> pd.DataFrame:
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


def module_section(wh: Warehouse, variant_key: str) -> list[Result]:
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
            + md_table(top.drop(columns=["run_id"]).rename(columns={"pct_of_execute": "% of execute"})),
        )
    ]


def regression_section(wh: Warehouse, variant_key: str) -> Result:
    """The significant slowdowns the regression gate stored for the current runs."""
    reg = variant_reads.slowdowns(wh, variant_key)
    return (
        "Regressions",
        "Slowdowns of the newest run against the previous runs of the same key (one-sided Mann-Whitney U, Benjamini-Hochberg across operators, minimum effect 5% and 0.05 ms, for an operator also 0.5% of end to end; faster runs are never listed here; emulated runs are compared on kernels, operator mix and instruction counts).\n\n"
        + (md_table(reg) if not reg.empty else "_no significant change in the current runs_"),
    )
