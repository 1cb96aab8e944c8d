"""`sme2 run --config FILE`: an experiment config (ours in TOML, or Arm's kit's JSON as it is) run
end to end: program, experiments, warehouse rows, compare_pairs, summary. `sme2 profile --config`
is the same command (kit/cli/profiling.py calls `run_config`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from kit import pipeline
from kit.cli.common import HomeOpt, JsonOpt, cell, command, console, csv_list, emit_json, progress, root_of
from kit.profile import experiments

app = typer.Typer()

ConfigOpt = typer.Option(..., "--config", "-c", help="Experiment config: ours (.toml) or Arm's kit's (.json).")
DeviceOpt = typer.Option(
    None, "--device", help="Device of experiments that name no target (Arm's configs): default the config's, else host."
)
OnlyOpt = typer.Option(None, "--only", help="Comma-separated experiment names to run (default: all).")


@app.command("run")
@command
def run_cmd(
    config: Path = ConfigOpt,
    device: Optional[str] = DeviceOpt,
    only: Optional[str] = OnlyOpt,
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Run an experiment config: export or import its program, each experiment on its target with
    its runner (a recipe, or runner_path: any executor_runner-compatible binary), the warehouse rows,
    its compare_pairs, and experiments.json in its output folder."""
    run_config(config, device, only, home, as_json)


def run_config(config: Path, device: str | None, only: str | None, home: Path | None, as_json: bool) -> None:
    root = root_of(home)
    with progress(None, as_json) as (say, _):
        done = pipeline.run_config(config, root, device=device, progress=say, only=csv_list(only) if only else None)
    if as_json:
        emit_json(
            {
                "config": done.config.name,
                "summary": str(done.summary),
                "runs": [r.to_json() for r in done.runs],
                "comparisons": done.comparisons,
            }
        )
        return
    print_config_run(done)


def print_config_run(done: experiments.ConfigRun) -> None:
    t = Table(title=f"Experiments of {done.config.name} ({done.config.source.name})")
    for col in ("experiment", "dtype", "target", "threads", "runner", "median ms", "CV %", "timing from", "run / log"):
        t.add_column(col)
    for r in done.runs:
        j = r.to_json()
        if r.result is not None:
            t.add_row(
                r.experiment,
                r.dtype,
                r.target,
                str(r.threads),
                j["runner_recipe"] or j["runner"],
                cell(j["e2e_median_ms"]),
                cell(j["e2e_cv_percent"]),
                escape(j["timing_source"]),
                escape(j["run_id"]),
            )
        else:
            t.add_row(
                r.experiment, r.dtype, r.target, str(r.threads), "xnntrace", "-", "-", "-", escape(j["xnntrace_log"])
            )
    console.print(t)
    for r in done.runs:
        for note in r.notes:
            console.print(f"[yellow]{escape(r.experiment)}[/] (t{r.threads}): {escape(note)}")
    for c in done.comparisons:
        for d in c["by_dtype"]:
            lo, hi = d["speedup_ci95"]
            console.print(
                f"[bold]{escape(c['label'])}[/] ({d['dtype']}): {d['baseline_median_ms']:.3f} ms -> "
                f"{d['candidate_median_ms']:.3f} ms, speedup {d['speedup']:.2f}x (95% CI {lo:.2f}-{hi:.2f})"
            )
        if not c["by_dtype"]:
            console.print(f"[yellow]{escape(c['label'])}[/]: no runs to compare")
    console.print(f"\nSummary: {done.summary}")
