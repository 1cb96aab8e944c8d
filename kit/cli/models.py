"""`sme2 models` and `sme2 export`: model packages and their exported programs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from kit.cli.common import (
    HomeOpt,
    JsonOpt,
    ModelsDirOpt,
    command,
    console,
    emit_json,
    err,
    progress,
    root_of,
)
from kit.core.errors import Sme2Error
from kit.core.names import Variant
from kit.export import artifact, batch, exporter
from kit.models import registry

app = typer.Typer()


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
        emit_json(
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
                    "quantization": p.spec.quantization if p.spec else None,
                    "xnnpack_delegation": p.spec.delegation if p.spec else None,
                    "description": p.spec.description if p.spec else "",
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
            options = [f"quantization {p.spec.quantization}"] if p.spec.quantization else []
            options += ["no delegation"] if not p.spec.delegation else []
            t.add_row(
                p.name,
                p.kind + (f"\n[dim]{', '.join(options)}[/]" if options else ""),
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


@app.command("export")
@command
def export_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model package name (default: tiny_seg)."),
    dtype: Optional[str] = typer.Option(
        None,
        "--dtype",
        "-d",
        help="Comma-separated: fp32, fp16, int8, int8-dynamic; or all the model supports (default: fp32).",
    ),
    export_all: bool = typer.Option(
        False, "--all", help="Every model package in every dtype it supports (broken packages are reported)."
    ),
    size: str = typer.Option("small", "--size", "-s", help="Named input size of the package (small, full, ...)."),
    backend: str = typer.Option("xnnpack", "--backend", help="xnnpack, or portable for a no-delegate baseline."),
    mode: str = typer.Option(
        "standard",
        "--mode",
        help="standard (.pte, ETRecord, program map); minimum (the .pte alone, no ETRecord: module paths, "
        "source lines and Model Explorer views are then unavailable); debug (standard + graph.json + lowering report).",
    ),
    save_graph: bool = typer.Option(
        False, "--save-graph", help="Also write graph.json (nodes, ops, delegate partitions)."
    ),
    outdir: Optional[Path] = typer.Option(
        None,
        "--outdir",
        help="Also copy the artifacts here (Arm's kit's --outdir); several variants go to one subfolder each.",
    ),
    checkpoint: Optional[Path] = typer.Option(
        None, "--checkpoint", help="Local state_dict to load (default: random init)."
    ),
    force: bool = typer.Option(False, "--force", help="Re-export even if an up-to-date export exists."),
    jobs: int = typer.Option(
        1, "--jobs", "-j", min=1, help="Export in parallel worker processes (lowering is single-threaded)."
    ),
    models_dir: Optional[Path] = ModelsDirOpt,
    home: Optional[Path] = HomeOpt,
    as_json: bool = JsonOpt,
):
    """Export model variants to .pte + ETRecord + inputs + export_meta.json (with a numerical check),
    and print `export ok` with the artifacts of each."""

    if mode not in artifact.MODES:
        raise Sme2Error(f"unknown --mode {mode!r}", f"use one of {', '.join(artifact.MODES)}")
    root = root_of(home)
    jobs_list, broken = export_jobs(model, dtype, export_all, checkpoint, size, models_dir)
    several = len(jobs_list) > 1

    def target_dir(variant: Variant) -> Path | None:
        """--outdir, or its subfolder named after the variant's key when several are exported."""
        if outdir is None:
            return None
        return outdir / variant.key if several else outdir

    with progress(len(jobs_list), as_json) as (say, advance):
        options = dict(backend=backend, force=force, progress=say, mode=mode, save_graph=save_graph)
        if jobs > 1 and not checkpoint and several:
            done = batch.export_many(
                jobs_list, root, workers=jobs, models_dir=str(models_dir) if models_dir else None, **options
            )
            out = list(done.values())
            for e in out:
                if outdir is not None:
                    artifact.copy_artifacts(e, target_dir(e.variant), mode)
        else:
            out = []
            for m, d, s in jobs_list:
                say(f"exporting {m}-{d} ({s}), {len(out) + 1}/{len(jobs_list)}")
                pkg = registry.get(m, models_dir)
                ckpt = str(checkpoint) if checkpoint else None
                out.append(
                    exporter.export_variant(
                        pkg, d, s, root, checkpoint=ckpt, outdir=target_dir(Variant(m, d, backend)), **options
                    )
                )
                advance()
    artifacts = {
        e.folder: [
            str((target_dir(e.variant) or e.folder) / n)
            for n in (
                artifact.artifact_names(e, mode)
                if outdir
                else sorted(f.name for f in e.folder.iterdir() if f.is_file() and not f.name.startswith("."))
            )
        ]
        for e in out
    }
    show_exports(out, artifacts, broken, as_json)
    if broken:
        raise typer.Exit(1)


def export_jobs(model, dtype, export_all: bool, checkpoint, size: str, models_dir) -> tuple[list, list]:
    """(model, dtype, size) to export, and the broken packages `--all` found (reported, not exported)."""
    broken = []
    if export_all:
        if model or dtype or checkpoint:
            raise Sme2Error("--all exports every package in every dtype", "drop --model, --dtype and --checkpoint")
        jobs_list = []
        for p in registry.discover(models_dir):
            if p.ok:
                jobs_list += [(p.name, d, size) for d in p.spec.supported_dtypes]
            else:
                broken.append(p)
        return jobs_list, broken
    name = model or registry.DEFAULT_MODEL
    registry.get(name, models_dir)
    return [(name, d, size) for d in registry.dtypes_of(name, dtype or "fp32", models_dir)], broken


def show_exports(out: list, artifacts: dict, broken: list, as_json: bool) -> None:
    """The exports as JSON, or a table and one `export ok` line each; broken packages named."""
    if as_json:
        emit_json(
            [{"folder": str(e.folder), "artifact_paths": artifacts[e.folder], **e.meta} for e in out]
            + [{"model": p.name, "error": p.error} for p in broken]
        )
        return
    t = Table(title="Exports (folders and files: the `export ok` lines)")
    for col in (
        "variant",
        "size",
        "folder",
        "MB",
        "partitions",
        "delegated",
        "portable ops",
        "max rel err",
        "export s",
    ):
        t.add_column(col, overflow="fold")
    for e in out:
        m = e.meta
        t.add_row(
            m["variant"],
            m["size"],
            e.folder.name,
            f"{m['pte_bytes'] / 1e6:.2f}",
            str(m["delegate_partitions"]),
            str(m["delegated_ops"]),
            ", ".join(m["non_delegated_op_names"]) or "-",
            f"{m['numerical_check']['max_rel_error']:.2e}",
            str(m["export_seconds"]),
        )
    console.print(t)
    for e in out:
        # One line, never wrapped: the paths copy whole.
        console.print(escape(artifact.ok_line(e, artifacts[e.folder])), soft_wrap=True)
        if e.meta.get("unavailable"):
            console.print(
                "  [dim]without an ETRecord, unavailable downstream: " + "; ".join(e.meta["unavailable"]) + "[/]"
            )
    for p in broken:
        err.print(f"[red]not exported: {p.name}[/]: {escape(p.error)}")
