"""The `sme2` command line: the whole workflow from a model package to per-operator tables.

Every command prints a human-readable table, or JSON with --json; errors say what was wrong and
what to do, and exit with status 2."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from kit import pipeline
from kit.analysis import compare, datamovement, regress
from kit.core import atomic, limits
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant
from kit.devices import inventory, toolsetup
from kit.export import exporter
from kit.models import registry
from kit.profile import session
from kit.report import armkit, builder, hud, perfetto
from kit.runners import recipes
from kit.stats import categories
from kit.store import queries, usersql, warehouse
from kit.store.connection import scalar
from kit.store.schema import TABLES
from kit.store.warehouse import Warehouse, missing_runs
from kit.trace import kernels
from kit.trace.program import ProgramMap

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Per-operator ExecuTorch profiling on Arm CPUs with SME2 on and off.\n\nEverything is written under the data root: --home, else $SME2_HOME, else ./.sme2",
)
# Wide tables when piped (CI logs, files); the terminal's width otherwise.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

HomeOpt = typer.Option(None, "--home", help="Data root (default: $SME2_HOME or ./.sme2).", show_default=False)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def _root(home: Optional[Path]) -> DataRoot:
    return DataRoot.resolve(home)


def _emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@contextlib.contextmanager
def _progress(total: int | None, quiet: bool):
    """A progress bar whose description follows the kit's progress messages."""
    if quiet:
        yield (lambda msg: None), (lambda: None)
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task("starting", total=total)
        yield (lambda msg: prog.update(task, description=msg)), (lambda: prog.advance(task))


def _fail(e: Sme2Error) -> None:
    # Messages carry user input and regexes such as [a-z0-9_]+: never let rich read them as markup.
    err.print(f"[bold red]error:[/] {escape(e.message)}")
    if e.hint:
        err.print(f"  [yellow]->[/] {escape(e.hint)}")
    raise typer.Exit(2)


def main() -> None:
    try:
        app()
    except Sme2Error as e:  # raised outside a command's own handler
        err.print(f"error: {escape(str(e))}")
        sys.exit(2)


def command(fn):
    """Register a command whose Sme2Errors become clean messages."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Sme2Error as e:
            _fail(e)

    return wrapper


# ---------------------------------------------------------------- models


@app.command("models")
@command
def models_cmd(
    models_dir: Optional[Path] = typer.Option(
        None, "--models-dir", help="Model packages folder (default: models/ or $SME2_MODELS)."
    ),
    as_json: bool = JsonOpt,
):
    """List model packages, their dtypes and sizes, and any problems."""

    pkgs = registry.discover(models_dir)
    if as_json:
        _emit_json(
            [
                {
                    "name": p.name,
                    "ok": p.ok,
                    "kind": p.kind,
                    "path": str(p.path),
                    "content_hash": p.content_hash,
                    "dtypes": list(p.spec.supported_dtypes) if p.spec else [],
                    "unsupported": p.spec.unsupported if p.spec else {},
                    "sizes": p.spec.sizes if p.spec else {},
                    "error": p.error,
                }
                for p in pkgs
            ]
        )
        return
    t = Table(title=f"Model packages in {registry.models_dir(models_dir)}")
    for col in ("model", "kind", "dtypes", "sizes", "hash", "status"):
        t.add_column(col)
    for p in pkgs:
        if p.ok:
            t.add_row(
                p.name,
                p.kind,
                ", ".join(p.spec.supported_dtypes)
                + (f"\n[dim]not: {', '.join(p.spec.unsupported)}[/]" if p.spec.unsupported else ""),
                ", ".join(f"{k}={v}" for k, v in p.spec.sizes.items()),
                p.content_hash[:10],
                "[green]ok[/]",
            )
        else:
            t.add_row(p.name, p.kind, "", "", p.content_hash[:10], f"[red]{escape(p.error)}[/]")
    console.print(t)
    for p in pkgs:
        for dtype, why in p.spec.unsupported.items() if p.ok else ():
            console.print(f"[dim]{p.name} {dtype}:[/] {escape(why)}")


# ---------------------------------------------------------------- export


@app.command("export")
@command
def export_cmd(
    model: str = typer.Option("tiny_seg", "--model", "-m", help="Model package name."),
    dtype: str = typer.Option(
        "fp32", "--dtype", "-d", help="Comma-separated: fp32, fp16, int8, int8-dynamic; or all the model supports."
    ),
    size: str = typer.Option("small", "--size", "-s", help="Named input size of the package (small, full, ...)."),
    backend: str = typer.Option("xnnpack", "--backend", help="xnnpack, or portable for a no-delegate baseline."),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Local state_dict to load (default: random init)."
    ),
    force: bool = typer.Option(False, "--force", help="Re-export even if an up-to-date export exists."),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Export dtypes in parallel worker processes (lowering is single-threaded)."
    ),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="Model packages folder."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Export model variants to .pte + ETRecord + inputs + export_meta.json (with a numerical check)."""

    root = _root(home)
    pkg = registry.get(model, models_dir)
    dtypes = registry.dtypes_of(model, dtype, models_dir)
    out = []
    with _progress(len(dtypes), as_json) as (say, advance):
        if jobs > 1 and not checkpoint:
            out = list(
                exporter.export_many(
                    [(model, d, size) for d in dtypes],
                    root,
                    workers=jobs,
                    backend=backend,
                    models_dir=str(models_dir) if models_dir else None,
                    force=force,
                    progress=say,
                ).values()
            )
        else:
            for d in dtypes:
                out.append(
                    exporter.export_variant(
                        pkg,
                        d,
                        size,
                        root,
                        backend=backend,
                        checkpoint=str(checkpoint) if checkpoint else None,
                        force=force,
                        progress=say,
                    )
                )
                advance()
    if as_json:
        _emit_json([{"folder": str(e.folder), **e.meta} for e in out])
        return
    t = Table(title="Exports")
    for col in ("variant", "size", "pte", "MB", "partitions", "delegated", "portable ops", "max rel err", "export s"):
        t.add_column(col)
    for e in out:
        m = e.meta
        t.add_row(
            m["variant"],
            m["size"],
            str(e.pte),
            f"{m['pte_bytes'] / 1e6:.2f}",
            str(m["delegate_partitions"]),
            str(m["delegated_ops"]),
            ", ".join(m["non_delegated_op_names"]) or "-",
            f"{m['numerical_check']['max_rel_error']:.2e}",
            str(m["export_seconds"]),
        )
    console.print(t)


# ---------------------------------------------------------------- runner


@app.command("build-runner")
@command
def build_runner_cmd(
    target: str = typer.Option("host.sme2-off", "--target", "-t", help="Target whose platform to build for."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Build (or reuse) the native C++ runner for a target's platform."""

    root = _root(home)
    resolved = inventory.resolve(target, root)
    with _progress(None, as_json) as (say, _):
        binary = recipes.runner_for(resolved, root, "native", say)
    if as_json:
        _emit_json({"path": str(binary.path), **binary.manifest})
    else:
        console.print(
            f"runner for [bold]{binary.manifest['platform']}[/] ({binary.manifest['recipe']}): {binary.path}\n  sha256 {binary.sha256[:16]}..., built in {binary.manifest['build_seconds']}s, executorch {binary.manifest['executorch_version']}"
        )


# ---------------------------------------------------------------- profile


@app.command("profile")
@command
def profile_cmd(
    model: str = typer.Option("tiny_seg", "--model", "-m", help="Model package name (default: the bundled tiny_seg)."),
    dtype: str = typer.Option("fp32", "--dtype", "-d", help="Comma-separated dtypes, or all the model supports."),
    target: str = typer.Option(
        "host.sme2-off", "--target", "-t", help="Comma-separated targets <device>.sme2-on|sme2-off."
    ),
    size: Optional[str] = typer.Option(
        None, "--size", "-s", help="Model size (default: the device's: full on hardware, small emulated)."
    ),
    iterations: int = typer.Option(
        20, "--iterations", "-n", min=1, help="Measured iterations per run (emulated targets cap it)."
    ),
    warmup: int = typer.Option(3, "--warmup", "-w", min=0, help="Warmup iterations, excluded from statistics."),
    threads: Optional[str] = typer.Option(
        None, "--threads", help="Comma-separated thread counts, e.g. 1,2 (default: the device's)."
    ),
    runner: str = typer.Option(
        "native", "--runner", help="native (C++ runner) or pybind (Python runtime in a child process)."
    ),
    backend: str = typer.Option("xnnpack", "--backend", help="xnnpack or portable."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Local state_dict (default: random init)."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds before a run counts as hung."),
    models_dir: Optional[Path] = typer.Option(None, "--models-dir", help="Model packages folder."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Export and build if needed, then a timing run and an ETDump run per target and thread count,
    and the per-operator analysis."""

    root = _root(home)
    limits.check_timeout(timeout)
    plan = session.ProfilePlan(
        model=model,
        dtypes=registry.dtypes_of(model, dtype, models_dir),
        targets=_csv(target),
        size=size,
        threads=limits.parse_threads(threads) if threads else None,
        iterations=iterations,
        warmup=warmup,
        runner=runner,
        backend=backend,
        checkpoint=str(checkpoint) if checkpoint else None,
        timeout_s=timeout,
        models_dir=str(models_dir) if models_dir else None,
    )
    with _progress(None, as_json) as (say, _):
        results = pipeline.profile_and_store(plan, root, progress=say)
    after = _after_profile(root, results)
    if as_json:
        _emit_json(
            [
                {
                    "run_dir": str(r.run_dir),
                    **r.record.to_json(),
                    "categories": r.analysis.category_table("blog").to_dict("records"),
                    "top_operators": r.analysis.op_stats.head(10).to_dict("records"),
                    **after,
                }
                for r in results
            ]
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
    rec, a = r.record, r.analysis
    emulated = " [yellow](EMULATED: times are not hardware times)[/]" if rec.emulated else ""
    console.print(
        f"\n[bold]{rec.variant}[/] on [bold]{rec.target}[/], size {rec.size}, {rec.threads} thread(s), {rec.runner} runner{emulated}"
    )
    console.print(
        f"  end-to-end median {a.e2e['median_ms']:.3f} ms (CV {a.e2e['cv_percent']:.1f}%, 95% CI {a.e2e['median_ci95_ms'][0]:.3f}-{a.e2e['median_ci95_ms'][1]:.3f}); Method::execute {a.execute['median_ms']:.3f} ms; operators explain {a.coverage:.0%}"
    )
    t = Table(title="Categories (median per iteration)")
    for col in ("category", "ms", "share of execute", "ops"):
        t.add_column(col, justify="right" if col != "category" else "left")
    for c in a.category_table("blog").itertuples():
        t.add_row(c.category, f"{c.median_ms:.3f}", f"{c.share_of_execute:.1%}", str(c.ops))
    console.print(t)
    t = Table(title="Top operators")
    for col in ("operator", "category", "n", "median ms", "CV %", "kernel"):
        t.add_column(col)
    for o in a.op_stats.head(8).itertuples():
        t.add_row(
            o.op_type, o.category, str(o.instances), f"{o.median_ms:.3f}", f"{o.cv_percent:.0f}", o.kernel_hint or "-"
        )
    console.print(t)
    if a.other_ops:
        console.print(f"  in Other: {escape(', '.join(a.other_ops))}")
    console.print(f"  run folder: {r.run_dir}")


# ---------------------------------------------------------------- setup and devices


@app.command("setup")
@command
def setup_cmd(home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Obtain QEMU >= 10.1, the aarch64 cross compiler and executorch wheel, and prove SME2 on/off
    switching with an aarch64 HWCAP2 probe (for the emulated armv9-qemu targets)."""

    root = _root(home)
    with _progress(None, as_json) as (say, _):
        info = toolsetup.setup(root, say)
    if as_json:
        _emit_json(info)
        return
    p = info["probe"]
    console.print(
        f"QEMU {info['qemu_version']}: {info['qemu']}\ncross compiler: {info['cross_cxx']}\naarch64 executorch: {info['executorch_aarch64']}"
    )
    console.print(
        f"probe: -cpu max -> SME2 {'yes' if p['sme2-on']['sme2'] else 'no'}; -cpu max,sme=off -> SME2 {'yes' if p['sme2-off']['sme2'] else 'no'}  [green]ok[/]"
    )


@app.command("devices")
@command
def devices_cmd(
    detect: bool = typer.Option(True, "--detect/--no-detect", help="Contact each device to detect its CPU and SME2."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """List devices, their targets and detected capabilities."""

    root = _root(home)
    rows = inventory.survey(root, detect=detect)
    if as_json:
        _emit_json(rows)
        return
    t = Table(title=f"Devices (defaults: kit/devices/devices.toml; yours: {root.user_devices})")
    for col in ("device", "transport", "platform", "recipe", "targets", "threads", "CPU", "SME2", "status"):
        t.add_column(col)
    for r in rows:
        sme2 = {True: "[green]yes[/]", False: "no", None: "?"}[r["sme2_detected"]]
        t.add_row(
            r["device"],
            r["transport"],
            r["platform"],
            r["recipe"],
            ", ".join(r["targets"]),
            ",".join(map(str, r["threads"])),
            r.get("cpu_model") or "-",
            sme2 + (" (emulated)" if r["emulated"] else ""),
            r["status"],
        )
    console.print(t)


# ---------------------------------------------------------------- warehouse

FormatOpt = typer.Option("table", "--format", "-f", help="table, csv or json.")


def _cell(value) -> str:
    """A table cell: missing values (None, NaN, NaT) as a dash, floats to 4 significant digits."""
    if value is None or value != value:  # NaN and NaT are the values unequal to themselves
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else escape(str(value))


def _print_frame(df, fmt: str, title: str = "") -> None:
    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso", indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "table":
        t = Table(title=title or None)
        for col in df.columns:
            t.add_column(str(col))
        for row in df.itertuples(index=False):
            t.add_row(*[_cell(v) for v in row])
        console.print(t)
        console.print(f"[dim]{len(df)} rows[/]")
    else:
        raise Sme2Error(f"unknown format {fmt!r}", "use table, csv or json")


@app.command("sql")
@command
def sql_cmd(
    query: str = typer.Argument(
        ...,
        help="A SELECT over runs, latency_samples, op_events, op_stats, category_stats, kernels, artifacts, regressions, current_runs.",
    ),
    fmt: str = FormatOpt,
    home: Optional[Path] = HomeOpt,
):
    """Run one read-only SELECT (or EXPLAIN of one) over the warehouse. It cannot read or write
    files, attach databases, load extensions or change settings (docs/orchestration.md, Security)."""

    root = _root(home)
    _print_frame(usersql.run_user_sql(root.warehouse, query), fmt)


@app.command("query")
@command
def query_cmd(
    name: Optional[str] = typer.Argument(None, help="Named query (see --list)."),
    param: list[str] = typer.Option([], "--param", "-p", help="key=value, repeatable."),
    list_: bool = typer.Option(False, "--list", help="List the named queries and their parameters."),
    fmt: str = FormatOpt,
    home: Optional[Path] = HomeOpt,
):
    """Run one of the everyday questions: latest-ops, op-history, category-shares, biggest-changes, runs."""

    if list_ or not name:
        for q in queries.QUERIES.values():
            console.print(
                f"[bold]{q.name}[/]  {q.description}\n    params: {', '.join(f'{k}={v!r}' if v else k for k, v in q.params.items())}"
            )
        return
    params = {}
    for p in param:
        k, sep, v = p.partition("=")
        if not sep:
            raise Sme2Error(f"--param {p!r} is not key=value", "e.g. --param variant=tiny_seg-fp32")
        params[k.strip()] = v.strip()
    _print_frame(queries.run(Warehouse.at(_root(home)), name, params), fmt, title=name)


warehouse_app = typer.Typer(
    help="Warehouse maintenance: info, rebuild from run folders, retention.", no_args_is_help=True
)
app.add_typer(warehouse_app, name="warehouse")


@warehouse_app.command("info")
@command
def warehouse_info(home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Row counts per table, the schema version, and run folders not (yet) in the warehouse."""

    root = _root(home)
    wh = Warehouse.at(root)
    wh.ensure()
    with wh.read() as conn:
        counts = {t: scalar(conn, f"SELECT count(*) FROM {t}") for t in TABLES}
        version = scalar(conn, "SELECT max(version) FROM schema_version")
    # Left by a run killed between its folder's rename and its insert (or a folder that fails to ingest).
    missing = [d.name for d in missing_runs(root)]
    info = {
        "path": str(wh.path),
        "schema_version": version,
        "rows": counts,
        "runs_not_in_warehouse": len(missing),
        "run_folders_not_in_warehouse": missing,
    }
    if as_json:
        _emit_json(info)
    else:
        console.print(f"{wh.path} (schema v{version})")
        for t, n in counts.items():
            console.print(f"  {t:16s} {n:>12,}")
        if missing:
            console.print(
                f"[yellow]{len(missing)} run folder(s) under {escape(str(root.runs))} are not in the warehouse[/]: "
                f"{escape(', '.join(missing[:5]))}{' ...' if len(missing) > 5 else ''}\n"
                "  -> the next `sme2 profile` ingests them, or run `sme2 warehouse rebuild` now"
            )


@warehouse_app.command("rebuild")
@command
def warehouse_rebuild(home: Optional[Path] = HomeOpt):
    """Ingest every run folder not yet in the warehouse (the files are the source of truth).
    Bad folders are skipped and listed with the reason at the end (exit status 1)."""

    root = _root(home)
    with _progress(len(warehouse.rebuild_candidates(root)), False) as (say, advance):
        result = warehouse.rebuild(root, say, advance)
    console.print(f"{len(result.added)} run(s) added, {len(result.present)} already present")
    if result.bad:
        err.print(f"[bold red]{len(result.bad)} run folder(s) skipped:[/]")
        for folder, why in result.bad.items():
            err.print(f"  {escape(folder)}: {escape(why)}")
        err.print("  [yellow]->[/] fix or delete those folders, then run `sme2 warehouse rebuild` again")
        raise typer.Exit(1)


@warehouse_app.command("prune")
@command
def warehouse_prune(
    days: int = typer.Option(
        ..., "--older-than-days", min=0, help="Drop raw op_events of runs older than this; aggregates stay."
    ),
    home: Optional[Path] = HomeOpt,
):
    """Retention: drop per-iteration operator events older than N days, keep every aggregate."""

    n = Warehouse.at(_root(home)).prune_events(days)
    console.print(f"pruned {n:,} op_events rows")


# ---------------------------------------------------------------- analysis and reports


def _variant_key(model: str, dtype: str) -> str:
    return Variant(model, dtype).key


@app.command("compare")
@command
def compare_cmd(
    model: str = typer.Option("tiny_seg", "--model", "-m"),
    dtype: str = typer.Option("fp32", "--dtype", "-d", help="One dtype, or several (comma) to show side by side."),
    device: str = typer.Option("armv9-qemu", "--device", help="Device whose .sme2-on and .sme2-off runs to compare."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Thread count (default: the smallest with a pair)."),
    operators: int = typer.Option(10, "--operators", help="Operators to list."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """SME2 on vs off from the warehouse: the case study's table (category, ms off -> on, speedup,
    share with SME2 on), the end-to-end speedup with its bootstrap interval, per-operator speedups."""

    if threads is not None:
        limits.check_threads(threads)
    wh = Warehouse.at(_root(home))
    dtypes = _csv(dtype)
    if len(dtypes) > 1:
        side = compare.dtype_side_by_side(wh, model, device, dtypes)
        _print_frame(
            side, "json" if as_json else "table", title=f"{model} on {device}: {' vs '.join(d.upper() for d in dtypes)}"
        )
        return
    c = compare.compare(wh, _variant_key(model, dtypes[0]), device, threads)
    if as_json:
        _emit_json(
            {
                "headline": c.headline(),
                "emulated": c.emulated,
                "e2e": c.e2e,
                "runs": {"on": c.run_on, "off": c.run_off},
                "bottleneck": c.bottleneck,
                "categories": c.categories.to_dict("records"),
                "operators": c.operators.head(operators).to_dict("records"),
            }
        )
        return
    console.print(f"[bold]{c.headline()}[/]")
    if c.emulated:
        console.print(
            "[yellow]EMULATED: kernel selection and operator mix are real; times are not hardware times, so no speedups are shown.[/]"
        )
    _print_frame(compare.blog_table(c), "table", title="Categories")
    cols = ["operator", "category", "off_kernels", "on_kernels", "instances_off", "off_ms", "on_ms"] + (
        [] if c.emulated else ["speedup"]
    )
    _print_frame(c.operators.head(operators)[cols], "table", title="Operators")
    console.print(
        f"bottleneck: {c.bottleneck['off']} (SME2 off) -> {c.bottleneck['on']} (SME2 on); runs off {c.run_off}, on {c.run_on}"
    )


@app.command("report")
@command
def report_cmd(
    model: str = typer.Option("tiny_seg", "--model", "-m"),
    dtype: str = typer.Option("fp32", "--dtype", "-d"),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Markdown + self-contained HTML report (charts inlined, PNG copies) for a model variant."""

    out = builder.build(_root(home), _variant_key(model, dtype))
    if as_json:
        _emit_json(
            {
                "markdown": str(out.markdown),
                "html": str(out.html),
                "pngs": [str(p) for p in out.pngs],
                "runs": out.run_ids,
            }
        )
    else:
        console.print(out.summary_md)
        console.print(f"report: {out.html}\nmarkdown: {out.markdown}")


@app.command("trace")
@command
def trace_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder."),
    other: Optional[Path] = typer.Option(None, "--vs", help="A second run folder: A/B tracks in one file."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help="Output .json, or a folder to write <run_id>.json into (default: reports/<variant>/traces/).",
    ),
    iterations: int = typer.Option(20, "--iterations", help="Iterations to include per run."),
    home: Optional[Path] = HomeOpt,
):
    """ETDump to Chrome/Perfetto trace JSON: one track per iteration, delegate ops nested under
    their DELEGATE_CALL (open in ui.perfetto.dev)."""

    limits.check_iterations(iterations)

    runs, loaded = [], []
    for d in [run_dir] + ([other] if other else []):
        r = session.load_run(d)
        loaded.append(r.record)
        runs.append((f"{r.record.variant} on {r.record.target} ({r.record.run_id})", r.trace.rows))
    file_name = "-vs-".join(rec.run_id for rec in loaded) + ".json"
    default = _root(home).reports / loaded[0].variant / "traces" / file_name
    if out is not None and out.is_dir():  # -o DIR: the trace goes into the folder, named from the run
        out = out / file_name
    path = perfetto.export(runs, out or default, iterations)
    console.print(f"trace: {path}  (open https://ui.perfetto.dev and drop the file)")


@app.command("datamovement")
@command
def datamovement_cmd(run_dir: Path = typer.Argument(..., help="A run folder."), as_json: bool = JsonOpt):
    """Transposes and other layout/copy/convert operators: time, share, position relative to
    delegate boundaries and non-delegated ops, and the nn.Modules that cause them."""

    r = session.load_run(run_dir)
    dm = datamovement.analyze(
        r.trace.rows, ProgramMap.load(run_dir) if (run_dir / "program_map.json").exists() else None
    )
    if as_json:
        _emit_json(
            {
                "sentence": dm.sentence,
                "transposes": dm.transposes,
                "health": dm.health,
                "summary": dm.summary.to_dict("records"),
                "hotspots": dm.hotspots.to_dict("records"),
                "positions": dm.positions.to_dict("records"),
            }
        )
        return
    console.print(f"[bold]{escape(dm.sentence)}[/]")
    _print_frame(dm.summary, "table", title="Data-movement operators (median per iteration)")
    _print_frame(dm.hotspots, "table", title="Hotspots: modules causing them")
    h = dm.health
    console.print(
        f"delegation: {h['delegated_ops']} delegated / {h['portable_ops']} portable operators, {h['delegate_partitions']} partitions; quantize/convert {h['quant_ms']:.3f} ms ({100 * h['quant_share']:.1f}%); portable kernels: {', '.join(h['portable_kernels']) or '-'}"
    )


@app.command("regressions")
@command
def regressions_cmd(
    run_id: Optional[str] = typer.Option(
        None, "--run", help="Check one run against its key's history (default: every current run)."
    ),
    window: int = typer.Option(7, "--window", help="Baseline: this many earlier runs of the same key."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Regression detection: Mann-Whitney U per operator and end to end vs the baseline window,
    Benjamini-Hochberg across operators, minimum effect 5%; emulated runs: kernels and op mix only."""

    wh = Warehouse.at(_root(home))
    ids = [run_id] if run_id else wh.query("SELECT run_id FROM current_runs ORDER BY variant, target").run_id.tolist()
    findings = {i: regress.check_run(wh, i, window=window) for i in ids}
    if as_json:
        _emit_json({i: {"passed": f.passed, "blocking": f.blocking, "message": f.message} for i, f in findings.items()})
        return
    for f in findings.values():
        mark = "[green]ok[/]" if f.passed else ("[red]BLOCKING[/]" if f.blocking else "[yellow]regression[/]")
        console.print(f"{mark} {escape(f.message)}")


@app.command("import-arm-kit")
@command
def import_arm_kit_cmd(
    folder: Path = typer.Argument(..., help="Arm kit run folder (out_<model>/runs/<platform>/)."),
    device: Optional[str] = typer.Option(
        None, "--device", help="Device alias to file the runs under (default: from manifest.json)."
    ),
    home: Optional[Path] = HomeOpt,
):
    """Import an existing run folder of Arm's SME2 kit (ETDumps, *_robust_stats.json, manifest)."""

    ids = armkit.import_folder(_root(home), folder, device)
    console.print(f"imported {len(ids)} run(s): " + ", ".join(ids))


@app.command("export-hud")
@command
def export_hud_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    dtype: Optional[str] = typer.Option(None, "--dtype", "-d"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to a file instead of stdout."),
    home: Optional[Path] = HomeOpt,
):
    """Current results as PyTorch benchmark dashboard v3 JSON records."""

    variant = _variant_key(model, dtype) if model and dtype else None
    recs = hud.records(Warehouse.at(_root(home)), variant)
    text = json.dumps(recs, indent=2)
    if out:
        atomic.write_text(out, text + "\n")
        console.print(f"{len(recs)} records -> {out}")
    else:
        sys.stdout.write(text + "\n")


@app.command("kernels")
@command
def kernels_cmd(
    log: Path = typer.Argument(..., help="Output of a kernel-log runner (XNN_LOG_LEVEL=5)."),
    other: Optional[Path] = typer.Option(None, "--vs", help="The SME2-off log, for a side-by-side view."),
    as_json: bool = JsonOpt,
):
    """Microkernels XNNPACK chose (`Using <kind> microkernel '<name>'` lines) with their ISA."""

    df = (
        kernels.side_by_side(log.read_text(errors="replace"), other.read_text(errors="replace"))
        if other
        else kernels.parse_kernel_log(log.read_text(errors="replace"))
    )
    _print_frame(df, "json" if as_json else "table", title="Microkernels")


# ---------------------------------------------------------------- analyze


@app.command("analyze")
@command
def analyze_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder under $SME2_HOME/runs/."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Re-analyse a run folder from its ETDump and timing files."""

    root = _root(home)
    r = session.load_run(run_dir, categories.load_rules(root.user_categories))
    if as_json:
        _emit_json(
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


# The orchestration commands live with the Dagster code location; kit itself never imports Dagster.
try:
    from sme2_assets import commands as _orchestration
except ImportError:  # kit installed alone
    _orchestration = None
if _orchestration is not None:
    _orchestration.register(app, console, err, _progress, command, _root)


if __name__ == "__main__":
    main()
