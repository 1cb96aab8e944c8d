"""Export of a model variant (model x dtype x backend) at one size to the artifact contract
(kit.export.artifact): build the eager model from its package, quantize and lower it
(kit.export.lowering), run the numerical check (kit.export.numerics) and write the folder
atomically; a gap beyond the dtype's tolerance fails the export and writes nothing.

Modes: `standard` (the contract), `minimum` (no ETRecord: the program map comes from the .pte
alone), `debug` (plus graph.json and the verbose lowering report). An export is reused while
nothing that determines it changed, from the data root or from the machine-wide export cache
(kit.export.cache). Many variants at once: kit.export.batch; programs exported elsewhere:
kit.export.importer."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic
from kit.core.errors import ExportError, ModelPackageError, Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Variant
from kit.export import cache as export_cache
from kit.export import graph, lowering
from kit.export.artifact import (
    META,
    MINIMUM_UNAVAILABLE,
    MODES,
    Export,
    copy_artifacts,
    find,
    folder_for,
    load,
    provenance,
    versions,
)
from kit.export.numerics import TOLERANCES, non_finite_error, numerical_check, relative_error, run_once
from kit.models import exitguard
from kit.models.registry import ModelPackage
from kit.runners import tensorfile
from kit.trace import etdump, program

_MODE_RANK = {"minimum": 0, "standard": 1, "debug": 2}  # a higher mode's export serves a lower request


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
        **versions(),
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
                fp32_reference = lowering.to_numpy(model(*inputs))
            eager = model
            if dtype == "fp16":
                eager = model.half()
                inputs = tuple(x.half() if torch.is_floating_point(x) else x for x in inputs)
            elif dtype in ("int8", "int8-dynamic"):
                say(f"quantizing {pkg.name} to {dtype}")
                calibration = spec.calibration_inputs(size_params) if spec.calibration_inputs else [inputs]
                eager = lowering.quantize(model, inputs, calibration, spec.quantizer_options(dtype))
            with torch.no_grad():
                reference = lowering.to_numpy(eager(*inputs)) if dtype != "fp16" else fp32_reference
            say(f"exporting {variant.key} ({backend}, {mode})")
            delegate = backend == "xnnpack" and spec.delegation
            with graph.capture_lowering_log() as lowering_log:
                edge, et = lowering.lower(eager, inputs, backend, delegate=delegate, etrecord=mode != "minimum")
    except Sme2Error:
        raise
    except Exception as e:
        raise ExportError(
            f"export of {variant.key} ({size}) failed in {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
            f"the model must be torch.export-able; see {model_file}",
        ) from e

    pte_bytes = et.buffer
    pte_sha = hashlib.sha256(pte_bytes).hexdigest()
    delegation = lowering.delegation(edge)
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
            "quantization": lowering.quantization_label(spec, dtype),
            "xnnpack_delegation": delegate,
            **delegation,
            **provenance(len(pmap.instructions), check, t0),
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
