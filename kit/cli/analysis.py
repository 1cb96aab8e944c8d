"""`sme2 compare`, `report`, `trace`, `datamovement`, `regressions`, `kernels`, `import-arm-kit`,
`armkit-files`, `explore`, `export-hud`: across runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from kit.analysis import compare, datamovement, kernelview, regress
from kit.cli.common import (
    HomeOpt,
    JsonOpt,
    command,
    console,
    csv_list,
    emit_json,
    print_frame,
    root_of,
)
from kit.core import atomic, limits, names
from kit.core.errors import Sme2Error
from kit.core.names import Variant
from kit.profile import session
from kit.profile.runrecord import RUN_FILE, RunRecord
from kit.report import armkit, builder, comparison, explorer, hud, perfetto
from kit.stats import categories
from kit.store import current, ingest
from kit.store.warehouse import Warehouse
from kit.trace import kernels, simpleperf
from kit.trace.program import ProgramMap

app = typer.Typer()


def _variant_key(model: str, dtype: str) -> str:
    return Variant(model, dtype).key


@app.command("compare")
@command
def compare_cmd(
    runs: Optional[list[str]] = typer.Argument(
        None, help="Two run ids or run folders: A (the baseline) and B. Without them: --a/--b, or SME2 off vs on."
    ),
    model: str = typer.Option("tiny_seg", "--model", "-m"),
    dtype: str = typer.Option("fp32", "--dtype", "-d", help="One dtype, or several (comma) to show side by side."),
    device: Optional[str] = typer.Option(
        None, "--device", help="Device of both runs (SME2 on/off mode: whose pair; default armv9-qemu)."
    ),
    threads: Optional[int] = typer.Option(None, "--threads", help="Thread count of both runs."),
    size: Optional[str] = typer.Option(None, "--size", help="Model size of both runs."),
    a: Optional[str] = typer.Option(
        None,
        "--a",
        help="Run A: key=value[,...] over the common options (threads, dtype, device, sme2, size, runner, run).",
    ),
    b: Optional[str] = typer.Option(None, "--b", help="Run B: key=value[,...], e.g. --a threads=1 --b threads=2."),
    operators: int = typer.Option(10, "--operators", help="Operators to list."),
    files: bool = typer.Option(
        True, "--files/--no-files", help="Write the comparison folder (Arm kit files) under reports/comparisons/."
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Two runs side by side from the warehouse: category ms A -> B, speedup, share of runtime in
    each, kernels; the end-to-end speedup A / B with its bootstrap interval; per-operator speedups.
    A and B are two run ids (or folders), or chosen with --a/--b (e.g. threads 1 vs 2, fp16 vs int8,
    device A vs B); by default SME2 off (A) vs on (B) of --model/--dtype on --device."""

    if threads is not None:
        limits.check_threads(threads)
    root = root_of(home)
    wh = Warehouse.at(root)
    dtypes = csv_list(dtype)
    if runs:
        if len(runs) != 2:
            raise Sme2Error(f"compare takes two runs, got {len(runs)}", "sme2 compare RUN_A RUN_B")
        c = compare.compare_ids(wh, *(_run_id(r) for r in runs))
    elif a or b:
        common = {"model": model, "dtype": dtypes[0]}
        for key, value in (("device", device), ("threads", threads), ("size", size)):
            if value is not None:
                common.update(compare.check_filter(key, value))
        over_a, over_b = compare.parse_filters(a or ""), compare.parse_filters(b or "")
        c = compare.compare_selected(wh, common, over_a, over_b, which=("run A (--a)", "run B (--b)"))
    else:
        device = device or "armv9-qemu"
        if len(dtypes) > 1:
            side = compare.dtype_side_by_side(wh, model, device, dtypes)
            print_frame(
                side,
                "json" if as_json else "table",
                title=f"{model} on {device}: {' vs '.join(d.upper() for d in dtypes)}",
            )
            return
        c = compare.compare(wh, _variant_key(model, dtypes[0]), device, threads)
    written = comparison.write(root, c) if files else None
    if as_json:
        emit_json({**comparison.as_json(c, operators), "folder": str(written.folder) if written else None})
        return
    console.print(f"[bold]{escape(c.headline())}[/]")
    if c.emulated:
        console.print(
            "[yellow]EMULATED: kernel selection and operator mix are real; times are not hardware times, so no speedups are shown.[/]"
        )
    counted = compare.counts_table(c)
    if counted is not None:
        print_frame(
            counted,
            "table",
            title=f"Categories by estimated cycles from instruction counts of the emulated CPU "
            f"({c.counts_execute['cost_model']}; estimates, not hardware time)",
        )
    print_frame(compare.blog_table(c), "table", title="Categories" + (" (emulated times)" if c.emulated else ""))
    print_frame(compare.operator_table(c, operators), "table", title="Operators")
    console.print(
        f"bottleneck: {c.bottleneck['a']} ({escape(c.a.label)}) -> {c.bottleneck['b']} ({escape(c.b.label)}); "
        f"runs A {c.a.run_id}, B {c.b.run_id}"
    )
    if written:
        console.print(f"files (Arm kit names): {written.folder}")


def _run_id(value: str) -> str:
    """A run id, or the id of a run folder given by path."""
    path = Path(value)
    if (path / RUN_FILE).is_file():
        return RunRecord.load(path).run_id
    return compare.check_filter("run", value)["run"]


@app.command("report")
@command
def report_cmd(
    model: str = typer.Option("tiny_seg", "--model", "-m"),
    dtype: str = typer.Option("fp32", "--dtype", "-d"),
    at: Optional[str] = typer.Option(
        None,
        "--at",
        help="A lab: rebuild the report from the DuckLake as of this snapshot (sme2 warehouse history) or time.",
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Markdown + self-contained HTML report (charts inlined, PNG copies) for a model variant. In a lab
    it names the DuckLake snapshot it read; --at rebuilds an older one."""

    out = builder.build(root_of(home), _variant_key(model, dtype), at=at)
    if as_json:
        emit_json(
            {
                "markdown": str(out.markdown),
                "html": str(out.html),
                "pngs": [str(p) for p in out.pngs],
                "runs": out.run_ids,
                "snapshot": out.snapshot,
            }
        )
    else:
        console.print(out.summary_md)
        console.print(f"report: {out.html}\nmarkdown: {out.markdown}")
        if out.snapshot is not None:
            console.print(f"lab DuckLake snapshot read: {out.snapshot} (sme2 report --at {out.snapshot} rebuilds this)")


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
    their DELEGATE_CALL (open in ui.perfetto.dev). A run profiled with --simpleperf adds its
    sampled call stacks as a stack chart beside the operators (its own clock)."""

    limits.check_iterations(iterations)

    runs, loaded = [], []
    for d in [run_dir] + ([other] if other else []):
        r = session.load_run(d)
        loaded.append(r.record)
        runs.append((f"{r.record.variant} on {r.record.target} ({r.record.run_id})", r.trace.rows))
    file_name = "-vs-".join(rec.run_id for rec in loaded) + ".json"
    default = root_of(home).report_path(loaded[0].variant, "traces", file_name)
    if out is not None and out.is_dir():  # -o DIR: the trace goes into the folder, named from the run
        out = out / file_name
    sampled = [
        ev for i, d in enumerate([run_dir] + ([other] if other else [])) for ev in simpleperf.trace_events(d, 1000 + i)
    ]
    path = perfetto.export(runs, out or default, iterations, sampled)
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
        emit_json(
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
    print_frame(dm.summary, "table", title="Data-movement operators (median per iteration)")
    print_frame(dm.hotspots, "table", title="Hotspots: modules causing them")
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
    counts: bool = typer.Option(
        False,
        "--counts",
        help="Zero-noise gate for CI: compare the instruction counts of counted (emulated) runs with the previous "
        "run of their key (or --baseline); any change of any operator's counts fails (exit 1). No statistics.",
    ),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="With --counts and --run: the run id to compare with (default: the previous run)."
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Regression detection: Mann-Whitney U per operator and end to end vs the baseline window,
    Benjamini-Hochberg across operators, minimum effect 5%; emulated runs: kernels, op mix and, where
    counted, instruction counts. --counts: only the counts, exactly, exit 1 on any change."""

    wh = Warehouse.at(root_of(home))
    if baseline is not None and (not counts or run_id is None):
        raise Sme2Error("--baseline goes with --counts and --run", "sme2 regressions --counts --run NEW --baseline OLD")
    ids = [run_id] if run_id else current.current_run_ids(wh)
    if counts:
        findings = {i: regress.count_gate(wh, i, baseline) for i in ids}
        findings = {i: f for i, f in findings.items() if f is not None}
        if not findings:
            raise Sme2Error(
                "no counted run has an earlier counted run to compare with",
                "profile an emulated target twice with counts (sme2 setup --counts; sme2 profile --target armv9-qemu...)",
            )
    else:
        findings = {i: regress.check_run(wh, i, window=window) for i in ids}
    if as_json:
        emit_json({i: {"passed": f.passed, "blocking": f.blocking, "message": f.message} for i, f in findings.items()})
    else:
        for f in findings.values():
            mark = "[green]ok[/]" if f.passed else ("[red]BLOCKING[/]" if f.blocking else "[yellow]regression[/]")
            console.print(f"{mark} {escape(f.message)}")
    if counts and not all(f.passed for f in findings.values()):
        raise typer.Exit(1)


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

    ids = armkit.import_folder(root_of(home), folder, device)
    console.print(f"imported {len(ids)} run(s): " + ", ".join(ids))


@app.command("armkit-files")
@command
def armkit_files_cmd(
    runs: Optional[list[str]] = typer.Argument(None, help="Run ids or run folders."),
    all_runs: bool = typer.Option(False, "--all", help="Every run folder under runs/."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """(Re)write Arm's kit files in run folders: *_exec_all_runs_timeline.csv, *_exec_run0_timeline.csv,
    *_exec_ops_stats.csv, *_category_summary.csv, *_operator_details.csv, *_e2e_latency.csv,
    *_other_top_ops.csv, *_kernels.csv, manifest.json, metrics.json, *_pipeline_summary.json/.md,
    analysis_summary.json (new runs get them when profiled)."""

    root = root_of(home)
    if all_runs == bool(runs):
        raise Sme2Error("name run ids or folders, or pass --all (not both)", "sme2 armkit-files RUN... | --all")
    folders = ingest.run_folders(root) if all_runs else [_run_folder(root, r) for r in runs]
    rules = categories.load_rules(root.user_categories)
    done, failed = {}, {}
    for folder in folders:
        try:
            done[folder.name] = sorted(p.name for p in session.write_armkit_files(root, folder, rules).values())
        except Sme2Error as e:
            if not all_runs:
                raise
            failed[folder.name] = e.message  # one bad folder must not stop the others
    if as_json:
        emit_json({"written": done, "failed": failed})
        return
    for name, files in done.items():
        console.print(f"{name}: {len(files)} files")
    for name, why in failed.items():
        console.print(f"[yellow]skipped[/] {name}: {escape(why)}")


@app.command("explore")
@command
def explore_cmd(
    run: str = typer.Argument(..., help="A run id or run folder."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Folder for the node-data files (default: reports/<variant>/explorer/<run_id>/)."
    ),
    open_ui: bool = typer.Option(
        True, "--open/--no-open", help="Open Model Explorer when ai-edge-model-explorer is installed."
    ),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Model Explorer node data for a run: per node of the program's graph (the ETRecord's edge
    program, node ids = FX node names) its median ms, share of Method::execute, category, and the
    SME2 off/on speedup when the run has a hardware SME2 pair."""

    root = root_of(home)
    run_id = _run_id(run)
    e = explorer.explore(root, run_id, out)
    opened = open_ui and not as_json and explorer.open_in_model_explorer(e, run_id)
    if as_json:
        emit_json(
            {
                "folder": str(e.folder),
                "files": {k: str(v) for k, v in e.files.items()},
                "nodes": len(e.nodes),
                "attributed_ms": float(e.nodes.median_ms.sum()),
                "unattributed_ms": e.unattributed_ms,
                "notes": e.notes,
            }
        )
        return
    console.print(
        f"{len(e.nodes)} nodes with times ({e.nodes.median_ms.sum():.3f} ms per inference attributed, "
        f"{e.unattributed_ms:.3f} ms of XNNPACK-inserted or fused operators not: see nodes.json)"
    )
    for note in e.notes:
        console.print(f"[yellow]{escape(note)}[/]")
    console.print(f"node data: {e.folder}  ({', '.join(p.name for p in e.files.values())})")
    if not opened and open_ui:
        console.print(
            "Model Explorer is not installed (pip install ai-edge-model-explorer, a large optional package); "
            "with it, `sme2 explore` opens the program with these files loaded."
        )


def _run_folder(root, value: str) -> Path:
    """A run folder, from its path or its run id."""
    path = Path(value)
    if (path / RUN_FILE).is_file():
        return path
    folder = root.run_path(compare.check_filter("run", value)["run"])
    if not (folder / RUN_FILE).is_file():
        raise Sme2Error(f"no run folder {folder}", "pass a run id from `sme2 query runs`, or a run folder")
    return folder


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
    recs = hud.records(Warehouse.at(root_of(home)), variant)
    text = json.dumps(recs, indent=2)
    if out:
        atomic.write_text(out, text + "\n")
        console.print(f"{len(recs)} records -> {out}")
    else:
        sys.stdout.write(text + "\n")


@app.command("kernels")
@command
def kernels_cmd(
    log: Optional[Path] = typer.Argument(None, help="Output of a kernel-log runner (XNN_LOG_LEVEL=5)."),
    other: Optional[Path] = typer.Option(None, "--vs", help="The SME2-off log, for a side-by-side view."),
    variant: Optional[str] = typer.Option(
        None, "--variant", "-v", help="From the warehouse: GEMM/conv kernels of this model partition, SME2 on vs off."
    ),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Only this device (with --variant)."),
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Microkernels XNNPACK chose: from the warehouse (--variant: the GEMM/conv view, SME2 on beside
    SME2 off, microkernel names from kernel-log runs) or from kernel-log output files."""

    if variant:
        Variant.parse(variant)
        if device:
            names.device_name(device)
        df = kernelview.side_by_side(Warehouse.at(root_of(home)), variant, device)
        print_frame(df, "json" if as_json else "table", title=f"GEMM/conv kernels of {variant}: SME2 on vs off")
        return
    if log is None:
        raise Sme2Error("nothing to show", "pass --variant <model>-<dtype> (warehouse) or a kernel-log file")
    df = (
        kernels.side_by_side(log.read_text(errors="replace"), other.read_text(errors="replace"))
        if other
        else kernels.parse_kernel_log(log.read_text(errors="replace"))
    )
    print_frame(df, "json" if as_json else "table", title="Microkernels")
