"""Arm's kit files in a run folder, so the scripts kit users already have keep working on our runs.

Arm's pipeline (model_profiling/pipeline/orchestrator.py and the tools it calls) leaves, per
experiment and thread count, `<stem>_exec_all_runs_timeline.csv`, `<stem>_exec_run0_timeline.csv`
and `<stem>_exec_ops_stats.csv` (etdump_to_csv), `<stem>_category_summary.csv`,
`<stem>_operator_details.csv`, `<stem>_e2e_latency.csv`, `<stem>_other_top_ops.csv`
(analyze_etdump_csv), `<stem>_kernels.csv` (xnntrace_to_kernels), and per output folder
`manifest.json`, `metrics.json`, `<model_stem>_pipeline_summary.json`/`.md` and
`analysis_summary.json` (analyze_results). A run folder of ours is one experiment at one thread
count; it gets all of them, with the kit's names, columns and keys, computed from the same rows the
warehouse stores for the run (`kit.stats.armkit`). Values our data does not have are null.

Experiment names follow the kit's pattern `<model_stem>_<experiment>_t<threads>`: the experiment
is the target with `.` as `_` (`host_sme2-off`), so the kit's SME2 on/off detection (`sme2_on`,
`sme2-off` in the name) works on them."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant
from kit.export import artifact
from kit.profile.runrecord import RunRecord
from kit.stats import armkit, categories
from kit.stats.summary import Analysis
from kit.trace import kernels as kernel_names
from kit.trace.etdump import Trace

# analysis_summary's kernel hints count operator types per kernel family (from their names).
LOGS = ("*_xnntrace.log", "kernels.log")


def experiment(record: RunRecord) -> str:
    """The kit's experiment name of a run: its target with `.` as `_` (e.g. `host_sme2-off`)."""
    return record.target.replace(".", "_")


def model_stem(record: RunRecord) -> str:
    """The kit's model stem (the .pte's stem): `<model>_<backend>_<dtype>`."""
    return Variant(record.model, record.dtype, record.backend).stem


def file_names(stem: str) -> dict[str, str]:
    """Per-run kit files, by role."""
    return {
        "timeline_all": f"{stem}_exec_all_runs_timeline.csv",
        "timeline_run0": f"{stem}_exec_run0_timeline.csv",
        "ops_stats": f"{stem}_exec_ops_stats.csv",
        "category_summary": f"{stem}_category_summary.csv",
        "operator_details": f"{stem}_operator_details.csv",
        "e2e_latency": f"{stem}_e2e_latency.csv",
        "other_top_ops": f"{stem}_other_top_ops.csv",
        "kernels": f"{stem}_kernels.csv",
    }


def result_entry(record: RunRecord, latencies_ms: list[float], location: Path, log: str | None) -> dict:
    """One `results[]` entry of the kit's manifest.json / metrics.json: the timing run's samples
    (`log`: the timing run's log file name in the run folder)."""
    s = pd.Series(latencies_ms, dtype=float)
    return {
        "experiment": experiment(record),
        "run_id": record.run_id,
        "metrics": {
            "runs": int(s.size),
            "threads": record.threads,
            "latency_ms": [float(x) for x in s],
            "median_ms": float(s.median()) if s.size else None,
            "min_ms": float(s.min()) if s.size else None,
            "max_ms": float(s.max()) if s.size else None,
            "etdump": str(Path(location) / "etdump.etdp"),
            "log": str(Path(location) / log) if log else None,
            "etdump_rel": "etdump.etdp",
            "log_rel": log,
        },
    }


def manifest(record: RunRecord, results: list[dict], model_path: Path | None, config: str | None = None) -> dict:
    """The kit's manifest.json: when, which config and model, the ExecuTorch checkout, results.
    We run the executorch wheel (or a source recipe), not a git checkout: `sha` and `dirty` are
    null and `version` says which release."""
    return {
        "generated_at": _now(),
        "config": config,
        "model": str(model_path) if model_path else None,
        "executorch": {
            "present": bool(record.versions.get("executorch")),
            "sha": None,
            "dirty": None,
            "version": record.versions.get("executorch"),
        },
        "results": results,
    }


def pipeline_entry(record: RunRecord, e2e: dict, location: Path, log: str | None) -> dict:
    """One `runs[]` entry of the kit's `<model_stem>_pipeline_summary.json` (orchestrator)."""
    names = file_names(record.stem)
    return {
        "experiment": experiment(record),
        "run_id": record.run_id,
        "threads": record.threads,
        "mode": "timing",
        "status": "ok",
        "paths": {
            "latency_log": str(Path(location) / log) if log else None,
            "timeline_all": str(Path(location) / names["timeline_all"]),
            "timeline_run0": str(Path(location) / names["timeline_run0"]),
            "etdump": str(Path(location) / "etdump.etdp"),
        },
        "metrics": {
            "median_ms": e2e.get("median_ms"),
            "mean_ms": e2e.get("mean_ms"),
            "cv_percent": e2e.get("cv_percent"),
            "robust_stats_path": str(Path(location) / f"{record.stem}_robust_stats.json"),
        },
        "runs": record.iterations,
        "warmup": record.warmup,
    }


def pipeline_summary(stem: str, entries: list[dict], location: Path) -> tuple[dict, str]:
    """The kit's pipeline summary, JSON and Markdown, for the given runs."""
    summary = {"model": stem, "generated_at": _now(), "output_root": str(location), "runs": entries}
    lines = [
        f"# Pipeline Summary – {stem}",
        "",
        f"- Generated: {summary['generated_at']}",
        f"- Output root: `{location}`",
        "",
        "## Timing Results",
        "| Experiment | Threads | Runs | Warmup | Median (ms) | Mean (ms) | CV (%) | Robust Stats |",
        "|-----------|---------|------|--------|-------------|-----------|--------|---------------|",
    ]
    for row in entries:
        m = row["metrics"]
        lines.append(
            "| {exp} | {thr} | {runs} | {warmup} | {median:.2f} | {mean:.2f} | {cv:.2f} | `{stats}` |".format(
                exp=row["experiment"],
                thr=row["threads"],
                runs=row["runs"],
                warmup=row["warmup"],
                median=_num(m.get("median_ms")),
                mean=_num(m.get("mean_ms")),
                cv=_num(m.get("cv_percent")),
                stats=m.get("robust_stats_path", "n/a"),
            )
        )
    lines.append("")
    return summary, "\n".join(lines)


def analysis_entry(record: RunRecord, events: pd.DataFrame, location: Path) -> dict:
    """One `per_etdump[]` entry of the kit's analysis_summary.json: blog category totals (mean ms
    per iteration), events per iteration, the CSVs written from it."""
    names = file_names(record.stem)
    per_iteration = int((events.iteration == events.iteration.min()).sum()) if len(events) else 0
    return {
        "etdump": str(Path(location) / "etdump.etdp"),
        "run_id": record.run_id,
        "categories_ms": armkit.category_totals(events),
        "rows": per_iteration,
        "csv_timeline": str(Path(location) / names["timeline_run0"]),
        "csv_stats": str(Path(location) / names["ops_stats"]),
    }


def analysis_summary(
    entries: list[dict], location: Path, model_path: Path | None, etrecord_path: Path | None, hints: dict
) -> dict:
    """The kit's analysis_summary.json (analyze_results, plus the `model` and `kernel_hints` keys its
    known-good fixture has): category totals summed across the ETDumps, as the kit sums them."""
    totals: dict[str, float] = {}
    for e in entries:
        for k, v in e["categories_ms"].items():
            totals[k] = totals.get(k, 0.0) + v
    csv_files = [p for e in entries for p in (e["csv_timeline"], e["csv_stats"])]
    return {
        "run_dir": str(location),
        "model": str(model_path) if model_path else None,
        "etrecord": str(etrecord_path) if etrecord_path else None,
        "etdump_count": len(entries),
        "category_totals_ms": totals,
        "kernel_hints": hints,
        "per_etdump": entries,
        "csv_files": csv_files,
    }


def kernel_hints(op_stats: pd.DataFrame) -> dict[str, int]:
    """Operator types per kernel family their names reveal (kleidiai-sme2, kleidiai, xnnpack, portable)."""
    fams = op_stats.op_type.map(kernel_names.family)
    return {str(k): int(v) for k, v in fams.value_counts().sort_index().items()}


def write_run_files(
    folder: Path,
    record: RunRecord,
    analysis: Analysis,
    trace: Trace,
    rules,
    *,
    location: Path | None = None,
    model_path: Path | None = None,
    etrecord_path: Path | None = None,
) -> dict[str, Path]:
    """Write every kit file of one run into `folder` (each atomically); paths inside the files name
    `location` (the committed run folder, when `folder` is its staging copy). Rewriting replaces them."""
    folder = Path(folder)
    location = Path(location or folder)
    stem = record.stem
    names = file_names(stem)
    events = categories.label(trace.operators, rules)
    execute = trace.method_ms
    details = armkit.operator_details(events, execute)
    logs = [p for pattern in LOGS for p in sorted(folder.glob(pattern))]
    micro = kernel_names.parse_kernel_log(logs[0].read_text(errors="replace")) if logs else None
    tables = {
        "timeline_all": armkit.timeline(trace.rows, stem),
        "timeline_run0": armkit.timeline(trace.rows, stem, run_index=0),
        "ops_stats": armkit.ops_stats(trace.rows, stem, analysis.op_stats),
        "category_summary": armkit.category_summary(events, execute),
        "operator_details": details,
        "e2e_latency": armkit.e2e_latency(execute, stem),
        "other_top_ops": armkit.other_top_ops(details),
        "kernels": armkit.kernels(analysis.op_stats, stem, micro),
    }
    paths = {role: atomic.write_text(folder / names[role], df.to_csv(index=False)) for role, df in tables.items()}
    log = timing_log(folder)
    results = [result_entry(record, analysis.e2e_samples, location, log)]
    paths["manifest"] = atomic.write_json(folder / "manifest.json", manifest(record, results, model_path))
    paths["metrics"] = atomic.write_json(folder / "metrics.json", {"results": results})
    summary, md = pipeline_summary(model_stem(record), [pipeline_entry(record, analysis.e2e, location, log)], location)
    paths["pipeline_summary"] = atomic.write_json(folder / f"{model_stem(record)}_pipeline_summary.json", summary)
    paths["pipeline_summary_md"] = atomic.write_text(folder / f"{model_stem(record)}_pipeline_summary.md", md)
    paths["analysis_summary"] = atomic.write_json(
        folder / "analysis_summary.json",
        analysis_summary(
            [analysis_entry(record, events, location)],
            location,
            model_path,
            etrecord_path,
            kernel_hints(analysis.op_stats),
        ),
    )
    return paths


def export_files(root: DataRoot, record: RunRecord) -> tuple[Path | None, Path | None]:
    """The .pte and ETRecord a run executed, if its export folder still holds that program (same
    sha256); (None, None) when the export was replaced or removed since."""
    try:
        exp = artifact.find(root, Variant(record.model, record.dtype, record.backend), record.size)
    except Sme2Error:
        return None, None
    if exp is None or exp.meta.get("pte_sha256") != record.pte_sha256 or not exp.pte.exists():
        return None, None
    return exp.pte, (exp.etrecord if exp.etrecord.exists() else None)


def timing_log(folder: Path) -> str | None:
    """The timing run's log file name in a run folder (`timing.log`), else the first log, else None."""
    logs = sorted(p.name for p in Path(folder).glob("*.log")) if Path(folder).is_dir() else []
    return next((n for n in logs if "timing" in n), logs[0] if logs else None)


def _num(v) -> float:
    return float("nan") if v is None else float(v)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
