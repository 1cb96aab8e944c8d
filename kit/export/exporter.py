"""Export of a model variant (model x dtype x backend) at one size to the artifact contract:

    exports/<model>-<dtype>[-portable]-<size>/
        <model>_<backend>_<dtype>.pte, .etrecord, inputs.bin, reference.bin, program_map.json,
        export_meta.json  [graph.json, lowering_report.md]

Any .pte folder that follows this contract runs through the same runners and pipeline. The
numerical check runs the .pte in a child process on the saved inputs and compares it with the
eager reference; a gap beyond the dtype's tolerance fails the export and writes nothing.

Modes: `standard` (the above), `minimum` (no ETRecord: the program map comes from the .pte alone),
`debug` (plus graph.json and the verbose lowering report). A program exported elsewhere (a plain
executorch script, Arm's kit) is brought in by `import_program`: same folder contract at size
`pte`, inputs generated from the program's own input metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core import atomic, lifetime
from kit.core.errors import ExportError, ModelPackageError, RunnerError, Sme2Error
from kit.core.home import DataRoot
from kit.core.names import DTYPES, Variant, model_name, size_name
from kit.core.names import dtype as check_dtype
from kit.devices.transports.local import LocalTransport
from kit.export import cache as export_cache
from kit.export import graph
from kit.models import exitguard, registry
from kit.models.registry import ModelPackage
from kit.runners import invoke, tensorfile
from kit.runners.build import build_runner
from kit.trace import etdump, program

# torchao and torch log warnings at import time that say nothing about the user's export
# (CUDA-only extensions that cannot load on a CPU build, a deprecated pytree registration).
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

# Max |pte - reference| / max |reference|. int8 compares with the quantized (fake-quant) model,
# so the tolerance covers kernel rounding, not quantization error (recorded separately).
TOLERANCES = {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.15, "int8-dynamic": 0.15}
META = "export_meta.json"
# Keys every reader of an export relies on; a meta without one of them is incomplete.
REQUIRED_META = ("model", "dtype", "backend", "size", "pte", "etrecord", "pte_sha256", "versions", "numerical_check")
MODES = ("standard", "minimum", "debug")
_MODE_RANK = {"minimum": 0, "standard": 1, "debug": 2}  # a higher mode's export serves a lower request
# What a minimum export (no ETRecord) cannot give downstream; export_meta.json records it.
MINIMUM_UNAVAILABLE = [
    "ETRecord (Inspector, Model Explorer and other ETRecord tools)",
    "nn.Module paths and source lines per operator (data movement 'which modules', report attribution)",
    "edge op types inside each delegate call (the program map names delegate calls only)",
    "graph.json and the lowering report (use --mode debug or --save-graph)",
]
PTE_SIZE = "pte"  # the size of an imported program: whatever it was exported at


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


def _versions() -> dict:
    from importlib.metadata import version

    return {"torch": version("torch"), "executorch": version("executorch"), "python": platform.python_version()}


def relative_error(out: list[np.ndarray], ref: list[np.ndarray]) -> tuple[float, float]:
    """(max abs error, max abs error / max |reference|) over all outputs."""
    if len(out) != len(ref):
        return float("inf"), float("inf")
    max_abs, scale = 0.0, 0.0
    for o, r in zip(out, ref):
        if o.shape != r.shape:
            return float("inf"), float("inf")
        o64, r64 = o.astype(np.float64), r.astype(np.float64)
        max_abs = max(max_abs, float(np.max(np.abs(o64 - r64))) if o.size else 0.0)
        scale = max(scale, float(np.max(np.abs(r64))) if r.size else 0.0)
    return max_abs, max_abs / max(scale, 1e-12)


def numerical_check(
    outputs: list[np.ndarray], reference: list[np.ndarray], dtype: str, tolerance: float | None = None
) -> dict:
    tol = TOLERANCES[dtype] if tolerance is None else tolerance
    max_abs, max_rel = relative_error(outputs, reference)
    check = {"max_abs_error": max_abs, "max_rel_error": max_rel, "tolerance": tol, "passed": bool(max_rel <= tol)}
    # NaN/inf make the error NaN, which reads as a tolerance failure; count them so the failure
    # says what it is.
    check["nan_outputs"], check["inf_outputs"] = _count_non_finite(outputs)
    check["nan_reference"], check["inf_reference"] = _count_non_finite(reference)
    check["output_values"] = int(sum(o.size for o in outputs))
    if check["nan_outputs"] or check["inf_outputs"]:
        check["passed"] = False
    return check


def _count_non_finite(arrays: list[np.ndarray]) -> tuple[int, int]:
    """(NaN count, inf count) over the floating-point arrays."""
    nan = inf = 0
    for a in arrays:
        if np.issubdtype(a.dtype, np.floating):
            nan += int(np.isnan(a).sum())
            inf += int(np.isinf(a).sum())
    return nan, inf


def non_finite_error(check: dict, label: str, model_file: Path) -> ExportError | None:
    """The error for a check whose program outputs hold NaN or inf, else None."""
    nan, inf = check.get("nan_outputs", 0), check.get("inf_outputs", 0)
    if not (nan or inf):
        return None
    total = check.get("output_values", "?")
    what = f"NaN ({nan} of {total} values)" if nan else f"infinite values ({inf} of {total})"
    if check.get("nan_reference") or check.get("inf_reference"):
        return ExportError(
            f"the output of {label} contains {what}; the eager model's output does too",
            f"the model itself computes NaN/inf on its example inputs (log or sqrt of negatives, division by zero, "
            f"overflow): fix the model or its example_inputs in {model_file}",
        )
    return ExportError(
        f"the output of {label} contains {what}, where the eager model's output is finite",
        "the program computes something the eager model does not (an op lowered wrongly, or fp16 overflow): "
        "compare with --backend portable and with fp32 to find the cause",
    )


def _to_numpy(out) -> list[np.ndarray]:
    import torch

    if isinstance(out, torch.Tensor):
        out = (out,)
    flat = []
    for o in out:
        if isinstance(o, torch.Tensor):
            flat.append(o.detach().contiguous().numpy())
        elif isinstance(o, (tuple, list)):
            flat.extend(_to_numpy(o))
    return flat


def _quantize(model, inputs: tuple, calibration: list[tuple], options: dict):
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(model, inputs).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(**options))
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)
    return convert_pt2e(prepared)


def _delegation(edge_manager) -> dict:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_manager.exported_program().graph_module)
    ops = {
        k: {"delegated": v.delegated, "non_delegated": v.non_delegated}
        for k, v in info.delegation_by_operator.items()
        if k != "getitem"
    }
    return {
        "delegate_partitions": info.num_delegated_subgraphs,
        "delegated_ops": sum(v["delegated"] for v in ops.values()),
        "non_delegated_ops": sum(v["non_delegated"] for v in ops.values()),
        "delegated_op_names": sorted(k for k, v in ops.items() if v["delegated"]),
        "non_delegated_op_names": sorted(k for k, v in ops.items() if v["non_delegated"]),
        "by_operator": ops,
    }


@dataclass
class _Plan:
    """What export_variant decided before doing any work: the variant, its folder and identity,
    and an export that can be reused as it is (the data root's own, or one from the cache)."""

    variant: Variant
    folder: Path
    identity: dict
    cached_as: dict | None
    reusable: Export | None


def _plan(
    pkg: ModelPackage,
    dtype: str,
    size: str,
    root: DataRoot,
    backend: str,
    checkpoint,
    force: bool,
    say,
    mode: str = "standard",
    save_graph: bool = False,
) -> _Plan:
    if mode not in MODES:
        raise ExportError(f"unknown export mode {mode!r}", f"use one of {', '.join(MODES)}")
    spec = pkg.spec
    if not pkg.ok:
        raise ModelPackageError(f"model package {pkg.name!r} is broken: {pkg.error}", f"fix {pkg.path}")
    if spec.name != pkg.name:  # the registry refuses these; a hand-made ModelPackage must too
        raise ModelPackageError(
            f"model package {pkg.name!r} declares name {spec.name!r}; a package's name must be its folder name",
            f"rename the folder {pkg.path} or the name in its spec",
        )
    spec.check_dtype(dtype)
    size_params = spec.size(size)
    # Every path and key below derives from the validated folder name, never from the spec.
    variant = Variant(pkg.name, dtype, backend)
    folder = folder_for(root, variant, size, pkg.source_id)
    identity = {
        "package_hash": pkg.content_hash,
        "checkpoint": str(checkpoint or ""),
        "size_params": size_params,
        **_versions(),
    }
    # The machine-wide cache of finished exports (kit.export.cache): same inputs, same bytes.
    # Only plain exports are cached (a checkpoint is the user's file; graph and debug modes are rare).
    plain = not checkpoint and mode == "standard" and not save_graph
    cached_as = None if not plain else {
        **identity, "model": pkg.name, "dtype": dtype, "backend": backend, "size": size,
        "tolerance": spec.tolerances.get(dtype, TOLERANCES[dtype]),
    }  # fmt: skip
    plan = _Plan(variant, folder, identity, cached_as, None)
    # --force never reads the old meta: a corrupt one must not stop the export that repairs it.
    existing = None if force else find(root, variant, size, pkg.source_id)
    if (
        existing
        and existing.meta.get("identity") == identity
        and _MODE_RANK.get(existing.meta.get("mode", "standard"), 1) >= _MODE_RANK[mode]
        and (not save_graph or (existing.folder / graph.GRAPH_FILE).exists())
        and existing.pte.exists()
        and atomic.sha256_file(existing.pte) == existing.meta["pte_sha256"]
    ):
        plan.reusable = existing
        return plan
    hit = export_cache.lookup(cached_as) if cached_as and not force else None
    if hit is not None:
        say(f"{variant.key} ({size}): from the export cache {hit}")
        try:
            plan.reusable = _restore(hit, folder, pkg)
        except (OSError, ValueError, Sme2Error):  # replaced or removed while being copied: export
            plan.reusable = None
    return plan


def reuse(
    pkg: ModelPackage,
    dtype: str,
    size: str,
    root: DataRoot,
    backend: str = "xnnpack",
    mode: str = "standard",
    save_graph: bool = False,
) -> Export | None:
    """The export of this variant if it needs no lowering (current in the data root, or restored
    from the cache), else None. Cheap: export_many asks it before starting worker processes."""
    return _plan(pkg, dtype, size, root, backend, None, False, lambda msg: None, mode, save_graph).reusable


def export_variant(
    pkg: ModelPackage,
    dtype: str,
    size: str = "small",
    root: DataRoot | None = None,
    backend: str = "xnnpack",
    checkpoint: str | None = None,
    force: bool = False,
    progress=None,
    mode: str = "standard",
    save_graph: bool = False,
    outdir: Path | None = None,
) -> Export:
    """Export one variant, or return the existing export if nothing that determines it changed
    (from the data root, else from the export cache; an export made in a fuller mode serves a
    lesser one). `save_graph` adds graph.json; `outdir` also gets a copy of the artifacts
    (`artifact_names`)."""
    root = root or DataRoot.resolve()
    say = progress or (lambda msg: None)
    plan = _plan(pkg, dtype, size, root, backend, checkpoint, force, say, mode, save_graph)
    if plan.reusable is None:
        # Two processes lowering the same cache key (parallel test workers, two runs of one sensor
        # tick) would both spend minutes on it: the second waits and restores the first's entry.
        with export_cache.exclusive(plan.cached_as):
            if plan.cached_as is not None and not force:
                plan = _plan(pkg, dtype, size, root, backend, checkpoint, force, say, mode, save_graph)
            if plan.reusable is None:
                return _lower_and_save(pkg, plan, dtype, size, root, backend, checkpoint, say, mode, save_graph, outdir)
    if outdir is not None:
        copy_artifacts(plan.reusable, outdir, mode)
    return plan.reusable


def _lower_and_save(
    pkg: ModelPackage,
    plan: _Plan,
    dtype: str,
    size: str,
    root: DataRoot,
    backend: str,
    checkpoint: str | None,
    say,
    mode: str,
    save_graph: bool,
    outdir: Path | None,
) -> Export:
    """Build, quantize, lower, numerically check and write one variant (the slow path of
    export_variant), then offer it to the export cache."""
    import torch

    spec, variant, folder, identity, cached_as = pkg.spec, plan.variant, plan.folder, plan.identity, plan.cached_as
    size_params = identity["size_params"]
    t0 = time.monotonic()
    torch.manual_seed(0)
    model_file = pkg.path / "model.py" if (pkg.path / "model.py").exists() else pkg.path
    try:
        with warnings.catch_warnings(), exitguard.model_code(pkg.name, f"exporting {variant.key}", str(model_file)):
            warnings.simplefilter("ignore")
            say(f"building {pkg.name} ({size})")
            model = spec.build(size_params, checkpoint).eval()
            inputs = tuple(spec.example_inputs(size_params))
            with torch.no_grad():
                fp32_reference = _to_numpy(model(*inputs))
            eager = model
            if dtype == "fp16":
                eager = model.half()
                inputs = tuple(x.half() if torch.is_floating_point(x) else x for x in inputs)
            elif dtype in ("int8", "int8-dynamic"):
                say(f"quantizing {pkg.name} to {dtype}")
                calibration = spec.calibration_inputs(size_params) if spec.calibration_inputs else [inputs]
                eager = _quantize(model, inputs, calibration, spec.quantizer_options(dtype))
            with torch.no_grad():
                reference = _to_numpy(eager(*inputs)) if dtype != "fp16" else fp32_reference
            say(f"exporting {variant.key} ({backend}, {mode})")
            delegate = backend == "xnnpack" and spec.delegation
            with graph.capture_lowering_log() as lowering_log:
                edge, et = _lower(eager, inputs, backend, delegate=delegate, etrecord=mode != "minimum")
    except Sme2Error:
        raise
    except Exception as e:
        raise ExportError(
            f"export of {variant.key} ({size}) failed in {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
            f"the model must be torch.export-able; see {model_file}",
        ) from e

    pte_bytes = et.buffer
    pte_sha = hashlib.sha256(pte_bytes).hexdigest()
    delegation = _delegation(edge)
    with atomic.staged_dir(folder) as stage:
        pte_name = f"{variant.stem}.pte"
        etrecord_name = f"{variant.stem}.etrecord" if mode != "minimum" else None
        (stage / pte_name).write_bytes(pte_bytes)
        if etrecord_name:
            et.get_etrecord().save(str(stage / etrecord_name))
        tensorfile.save(stage / "inputs.bin", [x.detach().contiguous().numpy() for x in inputs])
        tensorfile.save(stage / "reference.bin", reference)
        pmap = program.build(pte_bytes, pte_sha, et.get_etrecord() if etrecord_name else None)
        say(f"numerical check of {variant.key}")
        outputs, etdump_rows = run_once(stage / pte_name, stage / "inputs.bin", pmap, root=root)
        pmap.signature = etdump.compute_signature(etdump_rows)
        pmap.save(stage)
        check = numerical_check(outputs, reference, dtype, spec.tolerances.get(dtype))
        check["reference"] = "fp32 eager" if dtype in ("fp32", "fp16") else "quantized (fake-quant) eager"
        if dtype != "fp32":
            check["error_vs_fp32_eager"] = relative_error(outputs, fp32_reference)[1]
        nan_error = non_finite_error(check, variant.key, model_file)
        if nan_error:
            raise nan_error
        if not check["passed"]:
            raise ExportError(
                f"numerical check failed for {variant.key} ({size}): max relative error {check['max_rel_error']:.3g} > tolerance {check['tolerance']:.3g} (max abs {check['max_abs_error']:.3g})",
                "the program computes something else than the eager model: check the model for ops the backend lowers wrongly, or raise tolerances[dtype] in the ModelSpec if the gap is expected",
            )
        meta = {
            "model": pkg.name,
            "dtype": dtype,
            "backend": backend,
            "size": size,
            "size_params": size_params,
            "variant": variant.key,
            "mode": mode,
            "pte": pte_name,
            "etrecord": etrecord_name,
            "pte_sha256": pte_sha,
            "pte_bytes": len(pte_bytes),
            "inputs": [{"shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", "")} for x in inputs],
            "outputs": [{"shape": list(o.shape), "dtype": str(o.dtype)} for o in reference],
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "quantization": _quantization_label(spec, dtype),
            "xnnpack_delegation": delegate,
            **delegation,
            "instructions": len(pmap.instructions),
            "numerical_check": check,
            "export_seconds": round(time.monotonic() - t0, 2),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "package": {
                "name": pkg.name,
                "kind": pkg.kind,
                "content_hash": pkg.content_hash,
                "path": str(pkg.path),
                "source_id": pkg.source_id,
            },
            "checkpoint": str(checkpoint) if checkpoint else None,
            "identity": identity,
        }
        if mode == "minimum":
            meta["unavailable"] = MINIMUM_UNAVAILABLE
        if save_graph or mode == "debug":
            described = graph.describe(edge, delegation)
            graph.save(stage, described)
            if mode == "debug":
                atomic.write_text(stage / graph.REPORT_FILE, graph.lowering_report(described, meta, lowering_log))
        meta["artifacts"] = sorted(p.name for p in stage.iterdir() if p.is_file()) + [META]
        atomic.write_json(stage / META, meta)
    if cached_as:
        export_cache.store(folder, cached_as)
    exp = Export(folder, meta)
    if outdir is not None:
        copy_artifacts(exp, outdir, mode)
    return exp


def _restore(entry: Path, folder: Path, pkg: ModelPackage) -> Export:
    """A cached export copied into the data root (atomically), its meta naming this package's path."""
    with atomic.staged_dir(folder) as stage:
        for f in entry.iterdir():
            if f.is_file():
                shutil.copy2(f, stage / f.name)
        meta = json.loads((stage / META).read_text())
        meta["package"] = {**meta.get("package", {}), "path": str(pkg.path), "source_id": pkg.source_id}
        meta["cache"] = {"entry": str(entry), "restored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic.write_json(stage / META, meta)
    return load(folder)


def _quantization_label(spec, dtype: str) -> str | None:
    if dtype not in ("int8", "int8-dynamic"):
        return None
    opts = spec.quantizer_options(dtype)
    label = (
        f"{'dynamic' if opts['is_dynamic'] else 'static'} {'per-channel' if opts['is_per_channel'] else 'per-tensor'}"
    )
    return label + (f" (package: xnnpack_quantization={spec.quantization})" if spec.quantization else "")


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


def _lower(model, inputs: tuple, backend: str, delegate: bool = True, etrecord: bool = True):
    import torch
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(model, inputs)
    partitioners = []
    if backend == "xnnpack" and delegate:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    edge = to_edge_transform_and_lower(ep, partitioner=partitioners, generate_etrecord=etrecord)
    return edge, edge.to_executorch()


def run_once(
    pte: Path,
    inputs: Path,
    pmap: program.ProgramMap | None = None,
    timeout_s: float = 600.0,
    root: DataRoot | None = None,
):
    """Run a program once in a child process and return its outputs; with a program map, also
    trace it and return (outputs, trace rows). Uses the native runner (starts in milliseconds; built
    once and cached) and falls back to the pybind runner (a Python child importing torch, seconds)
    where no C++ compiler is available."""

    root = root or DataRoot.resolve()
    kind, binary = "pybind", None
    try:
        binary, kind = build_runner(root), "native"
    except RunnerError:
        pass
    with tempfile.TemporaryDirectory(prefix="sme2-check-") as tmp:
        req = invoke.RunRequest(
            pte=pte,
            inputs=inputs,
            iterations=1,
            warmup=0,
            threads=1,
            timeout_s=timeout_s,
            etdump=pmap is not None,
            failure_logs=root.logs,  # the temporary folder goes away; a failure's log must not
        )
        outcome = invoke.run_program(kind, req, Path(tmp), LocalTransport("host"), binary, label="numerical check")
        outputs = tensorfile.load(outcome.outputs)
        if pmap is None:
            return outputs
        return outputs, etdump.ingest(outcome.etdump, pmap).rows


def check_program(exp: Export, reference: list[np.ndarray] | None = None) -> dict:
    """Re-run the numerical check of an export, against its saved reference or another one."""
    ref = reference if reference is not None else tensorfile.load(exp.folder / "reference.bin")
    return numerical_check(
        run_once(exp.pte, exp.inputs, root=DataRoot(exp.folder.parent.parent)),
        ref,
        exp.meta["dtype"],
        exp.meta["numerical_check"]["tolerance"],
    )


def _export_job(args) -> str:
    model, dtype, size, root_path, backend, models_dir, force, mode, save_graph = args
    import warnings

    warnings.filterwarnings("ignore")

    return str(
        export_variant(
            registry.get(model, models_dir),
            dtype,
            size,
            DataRoot.resolve(root_path),
            backend=backend,
            force=force,
            mode=mode,
            save_graph=save_graph,
        ).folder
    )


def export_many(
    jobs: list[tuple[str, str, str]],
    root: DataRoot,
    workers: int = 2,
    backend: str = "xnnpack",
    models_dir: str | None = None,
    force: bool = False,
    progress=None,
    mode: str = "standard",
    save_graph: bool = False,
) -> dict[tuple[str, str, str], Export]:
    """Export (model, dtype, size) jobs in parallel worker processes. Lowering is single-threaded
    Python, so two workers roughly halve the wall time on two cores. The first error is raised
    after the other jobs finish (their exports are kept)."""
    import concurrent.futures as cf
    import multiprocessing

    # What needs no lowering (current in the data root, or in the export cache) is settled here:
    # a worker process costs seconds (it imports torch) where a restore costs milliseconds.
    reused: dict[tuple[str, str, str], Export] = {}
    if not force:
        for job in jobs:
            try:
                exp = reuse(registry.get(job[0], models_dir), job[1], job[2], root, backend, mode, save_graph)
            except Sme2Error:
                continue  # the export below reports it, after the other jobs, as it always has
            if exp is not None:
                reused[job] = exp
                if progress:
                    progress(f"{job[0]}-{job[1]} ({job[2]}): up to date")
    todo = [job for job in jobs if job not in reused]
    if len(todo) < len(jobs):
        rest = export_many(todo, root, workers, backend, models_dir, force, progress, mode, save_graph) if todo else {}
        return {job: reused.get(job) or rest[job] for job in jobs}

    if workers <= 1 or len(jobs) <= 1:
        out = {}
        for model, dtype, size in jobs:
            out[(model, dtype, size)] = export_variant(
                registry.get(model, models_dir),
                dtype,
                size,
                root,
                backend=backend,
                force=force,
                progress=progress,
                mode=mode,
                save_graph=save_graph,
            )
        return out
    results, errors = {}, []
    import os

    # Workers die with this process (an orphaned export would compete with the next measurement);
    # they are spawned by this thread in submit(), which waits for them below.
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=lifetime.worker_initializer,
        initargs=(os.getpid(),),
    ) as pool:
        futures = {
            pool.submit(_export_job, (m, d, s, str(root.path), backend, models_dir, force, mode, save_graph)): (m, d, s)
            for m, d, s in jobs
        }
        for fut in cf.as_completed(futures):
            job = futures[fut]
            try:
                results[job] = load(Path(fut.result()))
                if progress:
                    progress(f"exported {job[0]}-{job[1]} ({job[2]})")
            except Sme2Error as e:
                errors.append(e)
            except (cf.process.BrokenProcessPool, SystemExit) as e:
                # The worker ended (os._exit, a signal, a native crash) or asked to: no result is a
                # failure, never a silent success.
                how = "ended" if isinstance(e, cf.process.BrokenProcessPool) else f"called sys.exit({e.code!r})"
                errors.append(
                    ExportError(
                        f"the export worker for model {job[0]!r} {how} without a result while exporting "
                        f"{job[0]}-{job[1]} ({job[2]})",
                        f"export it alone to see the model's own error: sme2 export --model {job[0]} "
                        f"--dtype {job[1]} --size {job[2]}",
                    )
                )
    if errors:
        raise errors[0]
    return {job: results[job] for job in jobs}


# ---------------------------------------------------------------- programs exported elsewhere

# `<model>_<backend>_<dtype>.pte`, the name Arm's kit and this exporter give a program.
_PTE_NAME = re.compile(r"^(?P<model>.+?)_(?P<backend>xnnpack|portable)_(?P<dtype>[a-z0-9_]+)$")
_DTYPE_ALIASES = {"q8": "int8", "int8_dynamic": "int8-dynamic", "qd8": "int8-dynamic"}


def program_identity(stem: str) -> tuple[str, str | None, str | None]:
    """(model name, dtype or None, backend or None) from a program's file stem:
    'mobilenet_v3_small_xnnpack_fp16' -> ('mobilenet_v3_small', 'fp16', 'xnnpack'). The model name
    is made a valid name ([a-z0-9_], at most 64 characters)."""
    m = _PTE_NAME.match(stem.lower())
    base, dtype, backend = (m.group("model"), m.group("dtype"), m.group("backend")) if m else (stem.lower(), None, None)
    dtype = _DTYPE_ALIASES.get(dtype, dtype)
    model = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", base)).strip("_")[:64] or "program"
    return model, dtype if dtype in DTYPES else None, backend


def _generated_inputs(specs: list[dict], source: Path) -> list[np.ndarray]:
    """Inputs for a program without a model package: seeded standard-normal floats, zeros for
    integer and bool inputs (valid indices and masks), in the shapes and dtypes it declares."""
    rng = np.random.default_rng(0)
    arrays = []
    for n, spec in enumerate(specs):
        np_dtype = tensorfile.SCALAR_TYPES.get(spec["scalar_type"])
        if np_dtype is None:
            raise ExportError(
                f"input {n} of {source} has ExecuTorch scalar type {spec['scalar_type']}, which the runners cannot feed",
                "profile it from its model package instead (sme2 export), or change the input dtype",
            )
        shape = tuple(spec["shape"])
        if np.issubdtype(np_dtype, np.floating):
            arrays.append(rng.standard_normal(shape).astype(np_dtype))
        else:
            arrays.append(np.zeros(shape, dtype=np_dtype))
    return arrays


def exported_as(root: DataRoot, pte_sha256: str) -> Export | None:
    """The export under the data root whose program has this sha256 (a model-package export, not
    an import), or None. Unreadable folders are skipped: this is a lookup, not a check."""
    for meta_path in sorted(root.exports.glob(f"*/{META}")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("pte_sha256") == pte_sha256 and meta.get("size") != PTE_SIZE:
            try:
                exp = load(meta_path.parent)
            except Sme2Error:
                continue
            if exp.pte.is_file() and atomic.sha256_file(exp.pte) == pte_sha256:
                return exp
    return None


MAX_PTE_BYTES = 2 * 2**30  # without an extended header to say its size, a bigger file is refused


def check_extent(pte: Path) -> int:
    """The program's size as its extended header (`eh00`, after the `ET12` identifier) declares
    it: the segments' end when it has segments, else the flatbuffer's size. A file longer than that
    (padding, appended data) is refused before it is read or copied; so is a file without the
    header above MAX_PTE_BYTES."""
    size = pte.stat().st_size
    with open(pte, "rb") as f:
        head = f.read(40)
    declared = None
    if len(head) >= 40 and head[8:12] == b"eh00" and int.from_bytes(head[12:16], "little") >= 32:
        program_size, segment_base, segment_size = (int.from_bytes(head[i : i + 8], "little") for i in (16, 24, 32))
        declared = segment_base + segment_size if segment_base else program_size
    if declared is not None and size > declared:
        raise ExportError(
            f"{pte} is {size:,} bytes but its header declares {declared:,}: {size - declared:,} bytes were appended",
            "pass the .pte as to_executorch() wrote it (a padded or concatenated file is refused)",
        )
    if declared is None and size > MAX_PTE_BYTES:
        raise ExportError(
            f"{pte} is {size:,} bytes, above the {MAX_PTE_BYTES:,} accepted without an extended header",
            "export it with executorch 1.x (its .pte files carry the header that declares their size)",
        )
    return declared or size


def import_program(
    pte: Path,
    root: DataRoot | None = None,
    etrecord: Path | None = None,
    name: str | None = None,
    dtype: str | None = None,
    force: bool = False,
    progress=None,
) -> Export:
    """A program exported elsewhere (a plain executorch script, Arm's kit) as an export folder at
    size `pte`, so it runs through the same runners, analysis and warehouse as our own exports:

    - the .pte is copied (and the ETRecord, when given and it matches the program);
    - the program map is built from the .pte itself (module paths and edge op types only with an
      ETRecord); categories and data movement work from operator names either way;
    - inputs are generated from the program's input metadata (shapes and dtypes);
    - one check run on the host traces it (the ETDump signature later runs are checked against)
      and requires finite outputs. There is no eager model, so no numerical comparison.

    `name` and `dtype` default to what the file name says (`<model>_<backend>_<dtype>.pte`), else
    the file stem and the input dtype (float16 inputs: fp16, else fp32). A .pte that is one of our
    own exports (same sha256, e.g. copied out with --outdir) is that export, unless `name`,
    `dtype` or `etrecord` ask otherwise."""
    root = root or DataRoot.resolve()
    say = progress or (lambda msg: None)
    pte = Path(pte).expanduser()
    if not pte.is_file():
        raise ExportError(
            f"program {pte} does not exist or is not a file",
            "pass the path of a .pte file (--pte FILE, or model = in a config)",
        )
    check_extent(pte)  # before reading it: a padded or huge file is refused, not copied
    pte_bytes = pte.read_bytes()
    try:
        specs = program.input_specs(pte_bytes)
    except Exception as e:  # not a flatbuffer, another schema, no forward method
        raise ExportError(
            f"{pte} is not an ExecuTorch program this runtime can read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            "pass a .pte written by executorch's to_executorch() (executorch 1.x)",
        ) from e
    pte_sha = hashlib.sha256(pte_bytes).hexdigest()
    if name is None and dtype is None and etrecord is None:
        ours = exported_as(root, pte_sha)
        if ours is not None:  # our own export copied out (--outdir): keep its ETRecord, inputs and check
            say(f"{pte.name} is the export {ours.folder.name}: using it")
            return ours
    guessed_model, guessed_dtype, guessed_backend = program_identity(pte.stem)
    model = model_name(name) if name else guessed_model
    if dtype is None:
        dtype = guessed_dtype or ("fp16" if any(s["scalar_type"] == 5 for s in specs) else "fp32")
    check_dtype(dtype)
    et_record, etrecord_sha = None, None
    if etrecord is not None:
        etrecord = Path(etrecord).expanduser()
        if not etrecord.is_file():
            raise ExportError(
                f"ETRecord {etrecord} does not exist or is not a file",
                "pass the .etrecord the export wrote, or leave it out",
            )
        from executorch.devtools.etrecord import parse_etrecord

        try:
            et_record = parse_etrecord(str(etrecord))
        except Exception as e:
            raise ExportError(
                f"{etrecord} is not a readable ETRecord ({type(e).__name__})",
                "pass the .etrecord written with this .pte",
            ) from e
        why = program.etrecord_mismatch(pte_bytes, et_record)
        if why:
            raise ExportError(
                f"ETRecord {etrecord} does not belong to {pte}: {why}",
                "pass the ETRecord written together with this .pte",
            )
        etrecord_sha = atomic.sha256_file(etrecord)
    pmap = program.build(pte_bytes, pte_sha, et_record)
    has_delegates = any(i.kind == "delegate" for i in pmap.instructions)
    variant = Variant(model, dtype, guessed_backend or ("xnnpack" if has_delegates else "portable"))
    folder = folder_for(root, variant, PTE_SIZE)
    identity = {"pte_sha256": pte_sha, "etrecord_sha256": etrecord_sha, **_versions()}
    existing = None if force else find(root, variant, PTE_SIZE)
    if existing and existing.meta.get("identity") == identity and atomic.sha256_file(existing.pte) == pte_sha:
        return existing
    t0 = time.monotonic()
    inputs = _generated_inputs(specs, pte)
    with atomic.staged_dir(folder) as stage:
        pte_name = f"{variant.stem}.pte"
        etrecord_name = f"{variant.stem}.etrecord" if etrecord is not None else None
        atomic.write_bytes(stage / pte_name, pte_bytes)
        if etrecord_name:
            atomic.write_bytes(stage / etrecord_name, etrecord.read_bytes())
        tensorfile.save(stage / "inputs.bin", inputs)
        say(f"check run of {pte.name}")
        try:
            outputs, etdump_rows = run_once(stage / pte_name, stage / "inputs.bin", pmap, root=root)
        except RunnerError as e:
            raise ExportError(f"{pte} does not run: {e.message}", e.hint) from e
        pmap.signature = etdump.compute_signature(etdump_rows)
        pmap.save(stage)
        tensorfile.save(stage / "reference.bin", outputs)  # its own outputs: later checks compare with them
        nan, inf = _count_non_finite(outputs)
        check = {
            "passed": not (nan or inf),
            "reference": "none: an imported program has no eager model to compare with",
            "max_abs_error": None,
            "max_rel_error": None,
            "tolerance": None,
            "nan_outputs": nan,
            "inf_outputs": inf,
            "output_values": int(sum(o.size for o in outputs)),
        }
        if not check["passed"]:
            raise ExportError(
                f"{pte} computes non-finite outputs on generated inputs ({nan} NaN, {inf} inf of {check['output_values']})",
                "a program that needs particular inputs cannot be profiled on generated ones: profile its model package",
            )
        delegates = [i for i in pmap.instructions if i.kind == "delegate"]
        kernels_ = [i for i in pmap.instructions if i.kind == "kernel"]
        delegated_names = sorted({t for i in delegates for t in i.op_types})
        meta = {
            "model": model,
            "dtype": dtype,
            "backend": variant.backend,
            "size": PTE_SIZE,
            "size_params": {},
            "variant": variant.key,
            "mode": "standard" if etrecord_name else "minimum",
            "pte": pte_name,
            "etrecord": etrecord_name,
            "pte_sha256": pte_sha,
            "pte_bytes": len(pte_bytes),
            "inputs": [
                {
                    "shape": list(x.shape),
                    "dtype": str(x.dtype),
                    "generated": "normal(0, 1)" if x.dtype.kind == "f" else "zeros",
                }
                for x in inputs
            ],
            "outputs": [{"shape": list(o.shape), "dtype": str(o.dtype)} for o in outputs],
            "delegate_partitions": len(delegates),
            "delegated_ops": sum(len(i.op_types) for i in delegates) if et_record is not None else None,
            "non_delegated_ops": len(kernels_),
            "delegated_op_names": delegated_names,
            "non_delegated_op_names": sorted({i.name for i in kernels_}),
            "instructions": len(pmap.instructions),
            "numerical_check": check,
            "export_seconds": round(time.monotonic() - t0, 2),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": _versions(),
            "package": {
                "name": model,
                "kind": "pte",
                "source": str(pte.resolve()),
                "etrecord": str(etrecord) if etrecord else None,
            },
            "identity": identity,
        }
        if et_record is None:
            meta["unavailable"] = MINIMUM_UNAVAILABLE[:3]
        meta["artifacts"] = sorted(p.name for p in stage.iterdir() if p.is_file()) + [META]
        atomic.write_json(stage / META, meta)
    return Export(folder, meta)
