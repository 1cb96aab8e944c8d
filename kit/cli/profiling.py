"""`sme2 profile` and `sme2 analyze`: profiling sessions and re-analysing a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from kit import pipeline
from kit.cli.common import (
    HomeOpt,
    JsonOpt,
    ModelsDirOpt,
    command,
    console,
    cell,
    csv_list,
    emit_json,
    print_frame,
    progress,
    root_of,
)
from kit.cli.configs import run_config
from kit.core import limits, names
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.settings import Measure
from kit.models import registry
from kit.profile import runsummary, session
from kit.stats import categories
from kit.store import views
from kit.store.warehouse import Warehouse

app = typer.Typer()


@app.command("profile")
@command
def profile_cmd(
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model package name (default: the bundled tiny_seg)."
    ),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", "-d", help="Comma-separated dtypes, or all the model supports (default fp32; --pte: its own)."
    ),
    target: str = typer.Option(
        "host.sme2-off", "--target", "-t", help="Comma-separated targets <device>.sme2-on|sme2-off."
    ),
    size: Optional[str] = typer.Option(
        None, "--size", "-s", help="Model size (default: the device's: full on hardware, small emulated)."
    ),
    iterations: int = typer.Option(
        limits.DEFAULT_ITERATIONS,
        "--iterations",
        "-n",
        min=1,
        help="Measured iterations per run (emulated targets cap it).",
    ),
    warmup: int = typer.Option(
        limits.DEFAULT_WARMUP, "--warmup", "-w", min=0, help="Warmup iterations, excluded from statistics."
    ),
    threads: Optional[str] = typer.Option(
        None, "--threads", help="Comma-separated thread counts, e.g. 1,2 (default: the device's)."
    ),
    runner: str = typer.Option(
        "native", "--runner", help="native (C++ runner) or pybind (Python runtime in a child process)."
    ),
    kernel_log: bool = typer.Option(
        False,
        "--kernel-log",
        help="Use the kernel-log runner (an ExecuTorch source build, EXECUTORCH_REPO): the kernels table then "
        "names each operator's XNNPACK microkernel and ISA.",
    ),
    counts: Optional[bool] = typer.Option(
        None,
        "--counts/--no-counts",
        help="Instruction counts per operator on emulated targets (1 thread): a counting run under the plugin QEMU "
        "of `sme2 setup --counts`. Default: counted wherever that is set up.",
    ),
    simpleperf_profile: bool = typer.Option(
        False,
        "--simpleperf",
        help="Android phones (adb targets): one more run recorded by the phone's simpleperf; the run folder's "
        "simpleperf/ gets perf.data, a flame graph SVG, folded stacks and a Perfetto stack chart.",
    ),
    backend: str = typer.Option("xnnpack", "--backend", help="xnnpack or portable."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Local state_dict (default: random init)."),
    timeout: float = typer.Option(limits.RUN_TIMEOUT_S, "--timeout", help="Seconds before a run counts as hung."),
    models_dir: Optional[Path] = ModelsDirOpt,
    pte: Optional[Path] = typer.Option(
        None, "--pte", help="Profile this .pte without a model package (inputs from its own input metadata)."
    ),
    etrecord: Optional[Path] = typer.Option(None, "--etrecord", help="With --pte: its ETRecord (optional)."),
    config: Optional[Path] = typer.Option(
        None,
        "--config",
        "-c",
        help="Run an experiment config instead (.toml, or Arm's kit's .json): sme2 run --config.",
    ),
    device: Optional[str] = typer.Option(
        None, "--device", help="With --config: device of experiments without a target."
    ),
    only: Optional[str] = typer.Option(None, "--only", help="With --config: experiment names to run."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Export and build if needed, then a timing run and an ETDump run per target and thread count,
    and the per-operator analysis. --pte profiles a program exported elsewhere; --config runs an
    experiment config (the plan then comes from the file alone)."""

    if config is not None:
        check_no_plan_options(
            model=model,
            dtype=dtype,
            size=size,
            threads=threads,
            checkpoint=checkpoint,
            models_dir=models_dir,
            pte=pte,
            etrecord=etrecord,
            target=target,
            iterations=iterations,
            warmup=warmup,
            runner=runner,
            backend=backend,
            timeout=timeout,
        )
        run_config(config, device, only, home, as_json)
        return
    if device is not None or only is not None:
        raise Sme2Error("--device and --only go with --config", "name targets with --target")
    check_pte_options(pte, etrecord, checkpoint, models_dir, size)
    root = root_of(home)
    plan = profile_plan(
        model=model,
        dtype=dtype,
        target=target,
        size=size,
        iterations=iterations,
        warmup=warmup,
        threads=threads,
        runner=runner,
        kernel_log=kernel_log,
        counts=counts,
        simpleperf=simpleperf_profile,
        backend=backend,
        checkpoint=checkpoint,
        timeout=timeout,
        models_dir=models_dir,
        pte=pte,
        etrecord=etrecord,
    )
    with progress(None, as_json) as (say, _):
        results = pipeline.profile_and_store(plan, root, progress=say)
    show_results(root, results, as_json)


def check_no_plan_options(
    *,
    model,
    dtype,
    size,
    threads,
    checkpoint,
    models_dir,
    pte,
    etrecord,
    target,
    iterations,
    warmup,
    runner,
    backend,
    timeout,
) -> None:
    """With --config the file holds the whole plan: any plan option given (or changed from its
    default) is refused, naming them all."""
    given = {
        "--model": model,
        "--dtype": dtype,
        "--size": size,
        "--threads": threads,
        "--checkpoint": checkpoint,
        "--models-dir": models_dir,
        "--pte": pte,
        "--etrecord": etrecord,
    }
    defaults = {
        "--target": (target, "host.sme2-off"),
        "--iterations": (iterations, limits.DEFAULT_ITERATIONS),
        "--warmup": (warmup, limits.DEFAULT_WARMUP),
    }
    defaults |= {
        "--runner": (runner, "native"),
        "--backend": (backend, "xnnpack"),
        "--timeout": (timeout, limits.RUN_TIMEOUT_S),
    }
    clash = [k for k, v in given.items() if v is not None] + [k for k, (v, d) in defaults.items() if v != d]
    if clash:
        raise Sme2Error(
            f"{', '.join(clash)} cannot be combined with --config: the config file holds the whole plan",
            "put the setting in the config (docs/configs.md), or drop --config",
        )


def check_pte_options(
    pte: Optional[Path],
    etrecord: Optional[Path],
    checkpoint: Optional[Path],
    models_dir: Optional[Path],
    size: Optional[str],
) -> None:
    """--etrecord needs --pte; a --pte program takes no model-package options."""
    if etrecord is not None and pte is None:
        raise Sme2Error("--etrecord goes with --pte", "sme2 profile --pte FILE.pte --etrecord FILE.etrecord")
    if pte is not None and (checkpoint is not None or models_dir is not None or size is not None):
        raise Sme2Error(
            "--checkpoint, --models-dir and --size describe a model package, not a --pte program",
            "drop them: the program is profiled as it was exported",
        )


def profile_plan(
    *,
    model: Optional[str],
    dtype: Optional[str],
    target: str,
    size: Optional[str],
    iterations: int,
    warmup: int,
    threads: Optional[str],
    runner: str,
    kernel_log: bool,
    counts: Optional[bool],
    simpleperf: bool,
    backend: str,
    checkpoint: Optional[Path],
    timeout: float,
    models_dir: Optional[Path],
    pte: Optional[Path],
    etrecord: Optional[Path],
) -> session.ProfilePlan:
    """The ProfilePlan `sme2 profile`'s options describe: comma lists split, the model's dtypes
    (a --pte program has one, or none given: from its file name), the limits checked."""
    limits.check_timeout(timeout)  # named after its option (--timeout), not the settings field
    if pte is not None:
        dtypes = csv_list(dtype) if dtype else []
        if len(dtypes) > 1:
            raise Sme2Error(f"--dtype {dtype}: a program has one dtype", "give one dtype, or none (from its file name)")
    else:
        dtypes = registry.dtypes_of(model or registry.DEFAULT_MODEL, dtype or "fp32", models_dir)
    return session.ProfilePlan(
        model=(model or "") if pte is not None else (model or registry.DEFAULT_MODEL),
        dtypes=dtypes,
        targets=csv_list(target),
        measure=Measure.of(
            size=size,
            threads=limits.parse_threads(threads) if threads else None,
            iterations=iterations,
            warmup=warmup,
            runner=runner,
            timeout_s=timeout,
        ),
        kernel_log=kernel_log,
        backend=backend,
        checkpoint=str(checkpoint) if checkpoint else None,
        models_dir=str(models_dir) if models_dir else None,
        pte=str(pte) if pte else None,
        etrecord=str(etrecord) if etrecord else None,
        counts=counts,
        simpleperf=simpleperf,
    )


def show_results(root: DataRoot, results: list, as_json: bool) -> None:
    """The profiled runs: one JSON list, or each run's tables, then where the artifacts are."""
    after = _after_profile(root, results)
    if as_json:
        emit_json(
            [{"run_dir": str(r.run_dir), **r.record.to_json(), **runsummary.summarize(r), **after} for r in results]
        )
        return
    for r in results:
        print_run(r)
    console.print(f"\nArtifacts under [bold]{root.path}[/]: exports/, runners/, runs/")
    for line in after.get("notes", []):
        console.print(line)


def _after_profile(root: DataRoot, results) -> dict:
    return {
        "warehouse": str(root.warehouse),
        "notes": [f'Warehouse: {root.warehouse} (sme2 query runs; sme2 sql "SELECT ...")'],
    }


def print_run(r) -> None:
    rec, a, s = r.record, r.analysis, runsummary.summarize(r, operators=8)
    emulated = " [yellow](EMULATED: times are not hardware times)[/]" if rec.emulated else ""
    console.print(
        f"\n[bold]{rec.variant}[/] on [bold]{rec.target}[/], size {rec.size}, {rec.threads} thread(s), {rec.runner} runner{emulated}"
    )
    lo, hi = s["e2e_ci95_ms"]
    console.print(
        f"  end-to-end median {_num(s['e2e_median_ms'], '.3f')} ms (CV {_num(s['e2e_cv_percent'], '.1f')}%, 95% CI {_num(lo, '.3f')}-{_num(hi, '.3f')}); Method::execute {_num(s['execute_median_ms'], '.3f')} ms; operators explain {_num(s['coverage'], '.1%')} of it"
    )
    if a.e2e["median_ms"] < a.execute["median_ms"]:
        console.print(
            "  [dim](end to end is the untraced timing run; Method::execute and the operator times are the ETDump run's,"
            " whose event tracing makes it slower: compare shares within one run, not across the two)[/]"
        )
    t = Table(title="Categories (median per iteration)")
    for col in ("category", "ms", "share of execute", "ops"):
        t.add_column(col, justify="right" if col != "category" else "left")
    for c in s["categories"]:
        t.add_row(c["category"], cell(c["median_ms"]), _num(c["share_of_execute"], ".1%"), str(c["ops"]))
    console.print(t)
    t = Table(title="Top operators")
    for col in ("operator", "category", "n", "median ms", "CV %", "kernel"):
        t.add_column(col)
    for o in s["top_operators"]:
        t.add_row(
            o["op_type"],
            o["category"],
            str(o["instances"]),
            cell(o["median_ms"]),
            _num(o["cv_percent"], ".0f"),
            o["kernel_hint"] or "-",
        )
    console.print(t)
    if a.other_ops:
        console.print(f"  in Other: {escape(', '.join(a.other_ops))}")
    print_counts(rec.results.get("counts"))
    sampled = rec.results.get("simpleperf")
    if sampled:
        hot = ", ".join(f"{h['symbol']} {h['share']:.1%}" for h in sampled["hottest"][:3])
        console.print(
            f"  simpleperf: {sampled['samples']} samples on {sampled['threads']} thread(s); hottest (self): "
            f"{escape(hot)}; flame graph: {r.run_dir / 'simpleperf' / 'simpleperf_flame.svg'}"
        )
    console.print(f"  run folder: {r.run_dir}")


def _num(value, spec: str) -> str:
    """A summary number in a format (`nan` for a missing one, as the numbers printed before)."""
    return format(float("nan") if value is None else value, spec)


def print_counts(summary: dict | None) -> None:
    """A counted run's instructions per category (deterministic) and estimated cycles."""
    if not summary:
        return
    ex = summary["execute"]
    t = Table(title=f"Instructions retired per execution (emulated CPU; est. cycles: {summary['cost_model']})")
    for col in ("category", "instructions", "SME share", "est. cycles", "share of est. cycles"):
        t.add_column(col, justify="left" if col == "category" else "right")
    total = sum(c["est_cycles"] for c in summary["categories"].values()) or 1
    for cat, c in sorted(summary["categories"].items(), key=lambda kv: -kv[1]["est_cycles"]):
        share = c["sme_instructions"] / c["instructions"] if c["instructions"] else 0
        t.add_row(
            cat, f"{c['instructions']:,}", f"{share:.1%}", f"{c['est_cycles']:,}", f"{c['est_cycles'] / total:.1%}"
        )
    console.print(t)
    console.print(
        f"  Method::execute: {ex['instructions']:,} instructions ({ex['sme_instructions']:,} SME), "
        f"{ex['bytes_loaded']:,} bytes loaded, {ex['bytes_stored']:,} stored; est. {ex['est_cycles']:,} cycles "
        "(an estimate from emulation, not hardware time)"
    )


@app.command("analyze")
@command
def analyze_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder under $SME2_HOME/runs/."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Re-analyse a run folder from its ETDump and timing files."""

    root = root_of(home)
    r = session.load_run(run_dir, categories.load_rules(root.user_categories))
    if as_json:
        emit_json(
            {
                "run_dir": str(r.run_dir),
                **r.record.to_json(),
                "coverage": r.analysis.coverage,
                "e2e": r.analysis.e2e,
                "categories": r.analysis.category_stats.to_dict("records"),
                "operators": r.analysis.op_stats.to_dict("records"),
                "other_ops": r.analysis.other_ops,
            }
        )
    else:
        print_run(r)


@app.command("runs")
@command
def runs_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Only runs of this model."),
    dtype: Optional[str] = typer.Option(None, "--dtype", "-d", help="Only runs of this dtype."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Only runs on this target."),
    latest: bool = typer.Option(False, "--latest", help="Print only the newest matching run's folder (for scripts)."),
    all_runs: bool = typer.Option(False, "--all", help="Include runs a newer run of the same key superseded."),
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many runs."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """List runs, newest first; --latest prints the newest run folder."""
    root = root_of(home)
    filters = {}
    if model:
        filters["model"] = names.model_name(model)
    if dtype:
        filters["dtype"] = names.dtype(dtype)
    if target:
        filters["target"] = names.Target.parse(target).key
    wh = Warehouse.at(root)
    found = (
        views.find_runs(wh, filters, current=not all_runs).head(1 if latest else limit) if wh.path.exists() else None
    )
    if found is None or found.empty:
        said = ", ".join(f"{k}={v}" for k, v in filters.items()) or "any"
        raise Sme2Error(f"no run matches ({said}) in {root.warehouse}", "profile one: sme2 profile (or sme2 pipeline)")
    if latest:
        print(found.run_dir.iloc[0])  # plain print: a path a script reads, never wrapped
        return
    cols = ["run_id", "variant", "target", "size", "threads", "emulated", "e2e_median_ms", "started_at", "run_dir"]
    if as_json:
        emit_json(found[cols].to_dict("records"))
        return
    print_frame(found[cols], "table", title=f"Runs under {root.path} (emulated times are not hardware times)")
