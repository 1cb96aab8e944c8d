"""A comparison as a folder of files: Arm's kit files for two runs, plus our table.

`reports/comparisons/<run A>-vs-<run B>/` (A the baseline, B the candidate) holds what Arm's
pipeline writes into its output folder when it compares two experiments:

    <stem B>_comparison.csv                   analyze_etdump_csv --compare (category ms, speedup, pct)
    <timeline A>_vs_<timeline B>_robust_comparison.json   robust_latency_analysis --compare
    kernel_view_gemm.md                        generate_kernel_view (GEMM/IGEMM filter)
    <model stem>_pipeline_summary.json / .md   orchestrator summary of both runs
    manifest.json, metrics.json                both runs' results
    analysis_summary.json                      both runs' category totals

and `comparison.json` / `comparison.md`: our table (category ms A -> B, speedup, shares, kernels),
the end-to-end speedup with its bootstrap interval and the per-operator speedups. Every number is
read from the warehouse; writing the same comparison again replaces the files (no duplicates)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.analysis.compare import Comparison, Side, blog_table, counts_table, operator_table
from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import MAX_COMPONENT
from kit.profile import armkit as runfiles
from kit.profile.runrecord import RunRecord
from kit.stats import armkit, robust
from kit.store import views
from kit.store.warehouse import Warehouse

NAME_MAX = 255  # bytes in one path component on the file systems we write to


@dataclass
class ComparisonFiles:
    folder: Path
    paths: dict[str, Path]


def folder_name(c: Comparison) -> str:
    """`<run A>-vs-<run B>`, shortened with a hash when run ids are long (same runs, same folder)."""
    name = f"{c.a.run_id}-vs-{c.b.run_id}"
    if len(name) <= MAX_COMPONENT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{c.a.run_id[:90]}-vs-{c.b.run_id[:90]}-{digest}"


def folder_for(root: DataRoot, c: Comparison) -> Path:
    return root.report_path("comparisons", folder_name(c))


def record_of(wh: Warehouse, side: Side) -> RunRecord:
    """The run's record: its run.json when the folder is there (it has the file stem), else the
    warehouse row (stem as the profiler names it)."""
    if side.run_dir and (Path(side.run_dir) / "run.json").exists():
        try:
            return RunRecord.load(Path(side.run_dir))
        except Sme2Error:
            pass  # the warehouse row is enough for the file names
    row = views.find_runs(wh, {"run": side.run_id}).iloc[0]
    rec = RunRecord(
        run_id=side.run_id,
        model=side.model,
        dtype=side.dtype,
        backend=side.backend,
        size=side.size,
        target=side.target,
        device=side.device,
        sme2=side.sme2,
        threads=side.threads,
        runner=side.runner,
        iterations=int(row.iterations) if pd.notna(row.iterations) else 0,
        warmup=int(row.warmup) if pd.notna(row.warmup) else 0,
        emulated=side.emulated,
    )
    rec.stem = f"{runfiles.model_stem(rec)}_{side.target.replace('.', '_')}_t{side.threads}"
    return rec


def write(root: DataRoot, c: Comparison) -> ComparisonFiles:
    """Write the comparison folder of `c` (see the module doc); returns its paths by role."""
    wh = Warehouse.at(root)
    ids = [c.a.run_id, c.b.run_id]
    folder = folder_for(root, c)
    folder.mkdir(parents=True, exist_ok=True)
    name_a, name_b = c.kit_names()
    rec = {"a": record_of(wh, c.a), "b": record_of(wh, c.b)}
    sides = {"a": c.a, "b": c.b}
    events_all = views.op_events(wh, ids)
    timing = views.latency_samples(wh, ids, "timing")
    execute = views.latency_samples(wh, ids, "execute")
    ops = views.op_stats(wh, ids)
    events, cats, e2e, kern = {}, {}, {}, {}
    for k, side in sides.items():
        events[k] = events_all[events_all.run_id == side.run_id]
        ex = execute[execute.run_id == side.run_id].latency_ms.to_numpy()
        cats[k] = armkit.category_summary(events[k], ex)
        e2e[k] = robust.robust_stats(timing[timing.run_id == side.run_id].latency_ms.to_numpy())
        kern[k] = armkit.kernels(ops[ops.run_id == side.run_id], rec[k].stem)

    paths: dict[str, Path] = {}
    paths["comparison_csv"] = atomic.write_text(
        folder / f"{rec['b'].stem}_comparison.csv",
        armkit.comparison(cats["b"], cats["a"], name_b, name_a).to_csv(index=False),
    )
    tl_a, tl_b = (runfiles.file_names(rec[k].stem)["timeline_all"].removesuffix(".csv") for k in ("a", "b"))
    robust_name = f"{tl_a}_vs_{tl_b}_robust_comparison.json"
    if len(robust_name.encode()) > NAME_MAX:  # two long stems: keep the role, drop the names
        robust_name = "robust_comparison.json"
    paths["robust_comparison"] = atomic.write_json(
        folder / robust_name, armkit.robust_comparison(e2e["a"], e2e["b"], name_a, name_b)
    )
    model_stem = runfiles.model_stem(rec["a"])
    title = f"{model_stem}: GEMM/IGEMM Kernel view (XNNPACK Delegated):"
    paths["kernel_view"] = atomic.write_text(
        folder / "kernel_view_gemm.md", armkit.kernel_view(kern["b"], kern["a"], name_b, name_a, title)
    )
    run_dirs = {k: Path(sides[k].run_dir) if sides[k].run_dir else folder for k in sides}
    logs = {k: runfiles.timing_log(run_dirs[k]) for k in sides}
    entries = [runfiles.pipeline_entry(rec[k], e2e[k], run_dirs[k], logs[k]) for k in ("a", "b")]
    summary, md = runfiles.pipeline_summary(model_stem, entries, folder)
    paths["pipeline_summary"] = atomic.write_json(folder / f"{model_stem}_pipeline_summary.json", summary)
    paths["pipeline_summary_md"] = atomic.write_text(folder / f"{model_stem}_pipeline_summary.md", md)
    results = [
        runfiles.result_entry(
            rec[k], timing[timing.run_id == sides[k].run_id].latency_ms.tolist(), run_dirs[k], logs[k]
        )
        for k in ("a", "b")
    ]
    pte, etrecord = runfiles.export_files(root, rec["a"])
    paths["manifest"] = atomic.write_json(folder / "manifest.json", runfiles.manifest(rec["a"], results, pte))
    paths["metrics"] = atomic.write_json(folder / "metrics.json", {"results": results})
    per_run = [runfiles.analysis_entry(rec[k], events[k], run_dirs[k]) for k in ("a", "b")]
    hints = runfiles.kernel_hints(ops[ops.run_id == c.b.run_id])
    paths["analysis_summary"] = atomic.write_json(
        folder / "analysis_summary.json", runfiles.analysis_summary(per_run, folder, pte, etrecord, hints)
    )
    paths["comparison_json"] = atomic.write_json(folder / "comparison.json", as_json(c))
    paths["comparison_md"] = atomic.write_text(folder / "comparison.md", as_markdown(c))
    return ComparisonFiles(folder, paths)


def as_json(c: Comparison, operators: int | None = None) -> dict:
    """The comparison as JSON (what `sme2 compare --json` prints)."""
    ops = c.operators if operators is None else c.operators.head(operators)
    return {
        "headline": c.headline(),
        "emulated": c.emulated,
        "labels": {"a": c.a.label, "b": c.b.label},
        "runs": {"a": c.a.run_id, "b": c.b.run_id},
        "differs": {k: list(v) for k, v in c.differs.items()},
        "e2e": c.e2e,
        "bottleneck": c.bottleneck,
        "categories": c.categories.to_dict("records"),
        "operators": ops.to_dict("records"),
        "counts": {
            "what": "instruction counts of the emulated CPU and cycles estimated from them (not hardware time)",
            "execute": c.counts_execute,
            "categories": c.counts.to_dict("records"),
        }
        if c.counts is not None
        else None,
    }


def as_markdown(c: Comparison, operators: int = 12) -> str:
    def md(df: pd.DataFrame) -> str:
        return df.to_markdown(index=False, floatfmt=".3f") if not df.empty else "_none_"

    note = (
        "\n\n> EMULATED: kernel selection and operator mix are real; times are not hardware times, "
        "so no speedups are shown."
        if c.emulated
        else ""
    )
    counted = counts_table(c)
    counts = (
        f"## Estimated cycles from instruction counts\n\nInstructions retired by the emulated CPU (deterministic), "
        f"cycles estimated for {c.counts_execute['cost_model']}: estimates, not hardware time.\n\n{md(counted)}\n\n"
        if counted is not None
        else ""
    )
    return (
        f"# {c.a.label} vs {c.b.label}\n\n{c.headline()}{note}\n\n"
        f"Run A (baseline, {c.a.label}): `{c.a.run_id}`  \nRun B ({c.b.label}): `{c.b.run_id}`\n\n"
        f"{counts}## Categories{' (emulated times)' if c.emulated else ''}\n\n{md(blog_table(c))}\n\n"
        f"Bottleneck: {c.bottleneck['a']} ({c.a.label}) -> {c.bottleneck['b']} ({c.b.label}).\n\n"
        f"## Operators\n\n{md(operator_table(c, operators))}\n"
    )
