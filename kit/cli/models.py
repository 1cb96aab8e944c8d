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
    command,
    console,
    emit_json,
    progress,
    root_of,
)
from kit.export import exporter
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

    root = root_of(home)
    pkg = registry.get(model, models_dir)
    dtypes = registry.dtypes_of(model, dtype, models_dir)
    out = []
    with progress(len(dtypes), as_json) as (say, advance):
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
        emit_json([{"folder": str(e.folder), **e.meta} for e in out])
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
