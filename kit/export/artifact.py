"""The export folder, the contract every runner, analysis and the warehouse read:

    exports/<model>-<dtype>[-portable]-<size>/
        <model>_<backend>_<dtype>.pte, .etrecord, inputs.bin, reference.bin, program_map.json,
        export_meta.json  [graph.json, lowering_report.md]

Any .pte folder that follows this contract runs through the same runners and pipeline, whoever
wrote it (the exporter, `import_program`, a cache restore). So locating, loading and validating a
folder, and copying its artifacts out (`--outdir`), live here apart from the code that writes one:
readers (sessions, checks, the pipeline) need this module, not torch or the lowering."""

from __future__ import annotations

import json
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic
from kit.core.errors import ExportError, Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant, size_name
from kit.export import graph
from kit.trace import program

META = "export_meta.json"
# Keys every reader of an export relies on; a meta without one of them is incomplete.
REQUIRED_META = ("model", "dtype", "backend", "size", "pte", "etrecord", "pte_sha256", "versions", "numerical_check")
MODES = ("standard", "minimum", "debug")
# What a minimum export (no ETRecord) cannot give downstream; export_meta.json records it.
MINIMUM_UNAVAILABLE = [
    "ETRecord (Inspector, Model Explorer and other ETRecord tools)",
    "nn.Module paths and source lines per operator (data movement 'which modules', report attribution)",
    "edge op types inside each delegate call (the program map names delegate calls only)",
    "graph.json and the lowering report (use --mode debug or --save-graph)",
]


@dataclass
class Export:
    folder: Path
    meta: dict

    @property
    def pte(self) -> Path:
        return self.folder / self.meta["pte"]

    @property
    def inputs(self) -> Path:
        return self.folder / "inputs.bin"

    @property
    def etrecord(self) -> Path | None:
        """None for a minimum export or an imported program without an ETRecord."""
        return self.folder / self.meta["etrecord"] if self.meta.get("etrecord") else None

    @property
    def variant(self) -> Variant:
        return Variant(self.meta["model"], self.meta["dtype"], self.meta["backend"])

    @property
    def program_map(self) -> program.ProgramMap:
        return program.ProgramMap.load(self.folder)


def folder_for(root: DataRoot, variant: Variant, size: str, source_id: str = "") -> Path:
    """exports/<variant>-<size>[-<source id>]: a package from another folder than the models folder
    (registry.ModelPackage.source_id) gets its own folder, never the same-named one's."""
    if source_id and not re.fullmatch(r"[0-9a-f]{8}", source_id):
        raise ExportError(f"invalid package source id {source_id!r}", "report it")
    return root.exports / (f"{variant.key}-{size_name(size)}" + (f"-{source_id}" if source_id else ""))


def reexport_hint(variant: Variant | None = None, size: str | None = None) -> str:
    if variant is None:
        return "re-export the variant with --force: sme2 export --model ... --dtype ... --size ... --force"
    backend = "" if variant.backend == "xnnpack" else f" --backend {variant.backend}"
    return (
        f"re-export it with --force: sme2 export --model {variant.model} --dtype {variant.dtype} "
        f"--size {size}{backend} --force"
    )


def load(folder: Path, repair_hint: str | None = None) -> Export:
    """An export folder whose export_meta.json and program_map.json are readable and complete.

    A corrupt or incomplete file is an ExportError naming it; `repair_hint` says how to re-export."""
    folder = Path(folder)
    hint = repair_hint or reexport_hint()
    meta_path = folder / META
    if not meta_path.exists():
        raise ExportError(f"{folder} holds no {META}", "export the variant first: sme2 export --model ... --dtype ...")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{meta_path} is not valid JSON ({e})", hint) from e
    missing = [k for k in REQUIRED_META if k not in meta] if isinstance(meta, dict) else list(REQUIRED_META)
    if missing:
        raise ExportError(f"{meta_path} is incomplete: it lacks {', '.join(missing)}", hint)
    # The program and ETRecord are named by the meta: they must be files of this folder.
    for key in ("pte", "etrecord"):
        if key == "etrecord" and meta[key] is None:
            continue  # a minimum export or an imported program without one
        if not isinstance(meta[key], str) or not meta[key] or Path(meta[key]).name != meta[key]:
            raise ExportError(f"{meta_path} names its {key} {meta[key]!r}, which is not a file of {folder}", hint)
    map_path = folder / program.FILE_NAME
    try:
        program.ProgramMap.load(folder)
    except Exception as e:  # missing, not JSON, or not the map's shape
        detail = e.message if isinstance(e, Sme2Error) else f"{type(e).__name__}: {e}"
        raise ExportError(f"{map_path} is unreadable or incomplete ({detail})", hint) from e
    return Export(folder, meta)


def find(root: DataRoot, variant: Variant, size: str, source_id: str = "") -> Export | None:
    """The export of `variant` at `size` (of the package from `source_id`'s folder), or None. A
    folder whose meta is corrupt, incomplete or describes another variant is an error (re-export
    with --force), never silently reused."""
    folder = folder_for(root, variant, size, source_id)
    if not (folder / META).exists():
        return None
    hint = reexport_hint(variant, size)
    exp = load(folder, hint)
    described = (exp.meta["model"], exp.meta["dtype"], exp.meta["backend"], exp.meta["size"])
    if described != (variant.model, variant.dtype, variant.backend, size):
        raise ExportError(f"{folder / META} describes {'-'.join(map(str, described))}, not {variant.key}-{size}", hint)
    return exp


def versions() -> dict:
    from importlib.metadata import version

    return {"torch": version("torch"), "executorch": version("executorch"), "python": platform.python_version()}


def provenance(instructions: int, check: dict, started: float) -> dict:
    """The export_meta.json entries every export writes, lowered here or imported: the program's
    instruction count, the numerical check, how long it took (from `started`, time.monotonic), when,
    and with which versions."""
    return {
        "instructions": instructions,
        "numerical_check": check,
        "export_seconds": round(time.monotonic() - started, 2),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions(),
    }


def artifact_names(exp: Export, mode: str | None = None) -> list[str]:
    """What `--outdir` receives: the .pte alone in minimum mode; else the .pte, ETRecord, meta,
    program map and, when written, graph.json and the lowering report."""
    mode = mode or exp.meta.get("mode", "standard")
    if mode == "minimum":
        return [exp.meta["pte"]]
    names = [exp.meta["pte"], exp.meta.get("etrecord"), META, program.FILE_NAME, graph.GRAPH_FILE, graph.REPORT_FILE]
    return [n for n in names if n and (exp.folder / n).exists()]


def ok_line(exp: Export, paths: list[str]) -> str:
    """The export gate's line, the same from `sme2 export` and `sme2 pipeline`."""
    return f"export ok {exp.meta['variant']} ({exp.meta['size']}, {exp.meta.get('mode', 'standard')}): " + ", ".join(
        paths
    )


def copy_artifacts(exp: Export, outdir: Path, mode: str | None = None) -> list[Path]:
    """Copy an export's artifacts into `outdir` (Arm's kit's `--outdir`), each file atomically."""
    outdir = Path(outdir).expanduser()
    if outdir.exists() and not outdir.is_dir():
        raise ExportError(f"--outdir {outdir} is a file, not a folder", "pass a folder (it is created if missing)")
    return [atomic.write_bytes(outdir / n, (exp.folder / n).read_bytes()) for n in artifact_names(exp, mode)]
