"""The report's chapters around its results: the executive summary, environment and methodology
(devices, runner recipes and build flags, how numbers are computed), bottleneck analysis,
recommendations and artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from kit.analysis import advice
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.profile import armkit as runfiles
from kit.report.render import md_table, percent_column


def summary(comps: list, runs: pd.DataFrame, recs: list) -> str:
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


def environment(root: DataRoot, runs: pd.DataFrame, comps: list) -> str:
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
        + md_table(pd.DataFrame(table))
        + "\n\n### Runner recipes and build flags\n\n"
        + "\n".join(recipe_lines)
        + "\n\n### Methodology\n\n"
        + "\n".join(method)
    )


def bottlenecks(facts: dict, target_of: dict) -> str:
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
            f"{md_table(advice.bottlenecks(f))}\n\n"
            f"Data movement: {100 * f.shares.get('Data Movement', 0.0):.1f}% of runtime, of which transposes "
            f"{100 * t_frac:.0f}% ({dm.transposes['count']} per inference). Modules causing them:\n\n"
            f"{md_table(percent_column(dm.hotspots.head(6)))}"
        )
    return "\n\n".join(parts)


def recommendations(recs: list) -> str:
    if not recs:
        return "_nothing above the thresholds (kit/analysis/advice.py): no category or operator stands out_"
    return "Derived from the numbers above by the rules in kit/analysis/advice.py, heaviest first.\n\n" + "\n".join(
        f"{i}. **{t}**: {f.text}" for i, (t, f) in enumerate(recs, 1)
    )


def artifacts(root: DataRoot, out_dir: Path, runs: pd.DataFrame, folders: dict, pngs: list[Path]) -> str:
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
