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

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kit.analysis import advice, compare, datamovement
from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant
from kit.profile import session
from kit.report import charts, prose, sections
from kit.report.render import escape_markdown, html_document
from kit.report.sections import Figure, Result
from kit.report import comparison as comparison_files
from kit.store import views
from kit.store import variant as variant_reads
from kit.store.warehouse import Warehouse
from kit.trace.program import ProgramMap


@dataclass
class Report:
    markdown: Path
    html: Path | None
    pngs: list[Path]  # the chart images (PNG, or SVG when asked)
    summary_md: str
    run_ids: list[str] = field(default_factory=list)
    snapshot: int | None = None  # the lab DuckLake snapshot read (sme2 report --at rebuilds it); None: no lake


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

    results: list[Result] = [sections.latency_section(wh, comps, run_ids), sections.pair_section(comps)]
    results += sections.dtype_section(wh, v, comps)
    e2e_result, e2e_figure = sections.e2e_section(variant_key, runs)
    results.append(e2e_result)
    figures: list[Figure] = [e2e_figure, *sections.category_figures(wh, variant_key, runs)]
    ops = variant_reads.op_medians(wh, variant_key)
    figures += [
        sections.top_operators_figure(ops, runs),
        *sections.history_figures(wh, variant_key, ops),
    ]
    results += sections.kernel_sections(wh, variant_key)
    dm_result, dm_figures = sections.data_movement_section(runs, loaded)
    results.append(dm_result)
    figures += dm_figures
    results.append(sections.delegation_section(runs, ops_all))
    results += sections.module_section(wh, variant_key)
    results.append(sections.regression_section(wh, variant_key))
    pngs = [charts.save_image(chart, out_dir / f"{name}.{image_format}") for name, chart in figures]

    # Findings are labelled with the run's target and thread count (two runs may share a target).
    target_of = {r.run_id: f"{r.target} t{r.threads}" for r in runs.itertuples()}
    recs = [(target_of[i], f) for i in focus_ids for f in findings[i]]
    chapters = [
        ("Executive summary", prose.summary(comps, runs, recs)),
        ("Environment and methodology", prose.environment(root, runs, comps)),
        ("Results", "\n\n".join(f"### {t}\n\n{x}" for t, x in results)),
        ("Bottleneck analysis", prose.bottlenecks(facts, target_of)),
        ("Recommendations", prose.recommendations(recs)),
        ("Artifacts", prose.artifacts(root, out_dir, runs, folders, pngs)),
    ]
    header = _header(wh, variant_key, runs, snapshot)
    markdown, page = _write(variant_key, header, chapters, figures, pngs, out_dir, html_page)
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
    chapters: list[tuple[str, str]],
    figures: list[Figure],
    pngs: list[Path],
    out_dir: Path,
    html_page: bool,
) -> tuple[Path, Path | None]:
    """report.html (unless not `html_page`) and report.md: the header, the ## sections, and in the
    Markdown the chart images. Returns (markdown path, page path or None)."""
    md = [*header, *(f"## {title}\n\n{text}" for title, text in chapters)]
    # The Markdown shows the PNG copies; the HTML page draws the same charts itself (Vega inlined),
    # so it stays self-contained when moved away from the PNGs.
    # Every value in the text (run.json fields, op types, module names) is data, never markup.
    md = [escape_markdown(block) for block in md]
    page = (
        atomic.write_text(
            out_dir / "report.html", html_document("\n\n".join(md), figures, f"{variant_key}: SME2 report")
        )
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
