"""`sme2 compare`, `report`, `trace`, `datamovement`, `regressions`, `kernels`, `import-arm-kit`, `export-hud`: across runs."""

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
from kit.core import atomic, limits
from kit.core import names
from kit.core.errors import Sme2Error
from kit.core.names import Variant
from kit.profile import session
from kit.report import armkit, builder, hud, perfetto
from kit.store.warehouse import Warehouse
from kit.trace import kernels
from kit.trace.program import ProgramMap

app = typer.Typer()


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
    wh = Warehouse.at(root_of(home))
    dtypes = csv_list(dtype)
    if len(dtypes) > 1:
        side = compare.dtype_side_by_side(wh, model, device, dtypes)
        print_frame(
            side, "json" if as_json else "table", title=f"{model} on {device}: {' vs '.join(d.upper() for d in dtypes)}"
        )
        return
    c = compare.compare(wh, _variant_key(model, dtypes[0]), device, threads)
    if as_json:
        emit_json(
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
    print_frame(compare.blog_table(c), "table", title="Categories")
    cols = ["operator", "category", "off_kernels", "on_kernels", "instances_off", "off_ms", "on_ms"] + (
        [] if c.emulated else ["speedup"]
    )
    print_frame(c.operators.head(operators)[cols], "table", title="Operators")
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

    out = builder.build(root_of(home), _variant_key(model, dtype))
    if as_json:
        emit_json(
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
    default = root_of(home).reports / loaded[0].variant / "traces" / file_name
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
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Regression detection: Mann-Whitney U per operator and end to end vs the baseline window,
    Benjamini-Hochberg across operators, minimum effect 5%; emulated runs: kernels and op mix only."""

    wh = Warehouse.at(root_of(home))
    ids = [run_id] if run_id else wh.query("SELECT run_id FROM current_runs ORDER BY variant, target").run_id.tolist()
    findings = {i: regress.check_run(wh, i, window=window) for i in ids}
    if as_json:
        emit_json({i: {"passed": f.passed, "blocking": f.blocking, "message": f.message} for i, f in findings.items()})
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

    ids = armkit.import_folder(root_of(home), folder, device)
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
