"""Programs exported elsewhere (a plain executorch script, Arm's kit): `import_program` brings a
.pte (and its ETRecord, if given) in as an export folder at size `pte`, so it runs through the
same runners, analysis and warehouse as our own exports. There is no model package and no eager
model: the identity comes from the file name, inputs are generated from the program's input
metadata, the file's declared extent is checked before it is read, and one check run traces it.
Apart from the exporter because nothing of the lowering applies."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np

from kit.core import atomic
from kit.core.errors import ExportError, RunnerError, Sme2Error
from kit.core.home import DataRoot
from kit.core.names import DTYPES, Variant, model_name
from kit.core.names import dtype as check_dtype
from kit.export.artifact import META, MINIMUM_UNAVAILABLE, Export, find, folder_for, load, provenance, versions
from kit.export.numerics import count_non_finite, run_once
from kit.runners import tensorfile
from kit.trace import etdump, program

PTE_SIZE = "pte"  # the size of an imported program: whatever it was exported at

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
    pte_bytes, specs = _read_program(pte)
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
        et_record, etrecord_sha = _matching_etrecord(etrecord, pte, pte_bytes)
    pmap = program.build(pte_bytes, pte_sha, et_record)
    has_delegates = any(i.kind == "delegate" for i in pmap.instructions)
    variant = Variant(model, dtype, guessed_backend or ("xnnpack" if has_delegates else "portable"))
    folder = folder_for(root, variant, PTE_SIZE)
    identity = {"pte_sha256": pte_sha, "etrecord_sha256": etrecord_sha, **versions()}
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
        outputs, check = _check_run(stage, pte_name, pte, pmap, root)
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
            **_io_meta(inputs, outputs),
            **_delegation_meta(pmap, with_etrecord=et_record is not None),
            **provenance(len(pmap.instructions), check, t0),
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


def _read_program(pte: Path) -> tuple[bytes, list[dict]]:
    """The .pte's bytes and its forward method's input specs; a missing, oversized or unreadable
    file is an ExportError saying what to pass instead."""
    if not pte.is_file():
        raise ExportError(
            f"program {pte} does not exist or is not a file",
            "pass the path of a .pte file (--pte FILE, or model = in a config)",
        )
    check_extent(pte)  # before reading it: a padded or huge file is refused, not copied
    pte_bytes = pte.read_bytes()
    try:
        return pte_bytes, program.input_specs(pte_bytes)
    except Exception as e:  # not a flatbuffer, another schema, no forward method
        raise ExportError(
            f"{pte} is not an ExecuTorch program this runtime can read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            "pass a .pte written by executorch's to_executorch() (executorch 1.x)",
        ) from e


def _matching_etrecord(etrecord: Path, pte: Path, pte_bytes: bytes):
    """The parsed ETRecord and its sha256, refused unless it was written with this program."""
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
    return et_record, atomic.sha256_file(etrecord)


def _check_run(stage: Path, pte_name: str, pte: Path, pmap, root: DataRoot) -> tuple[list, dict]:
    """One traced run of the staged program on its generated inputs: the ETDump signature and its
    own outputs (later checks compare with them) are saved beside it; non-finite outputs refuse it."""
    try:
        outputs, etdump_rows = run_once(stage / pte_name, stage / "inputs.bin", pmap, root=root)
    except RunnerError as e:
        raise ExportError(f"{pte} does not run: {e.message}", e.hint) from e
    pmap.signature = etdump.compute_signature(etdump_rows)
    pmap.save(stage)
    tensorfile.save(stage / "reference.bin", outputs)
    nan, inf = count_non_finite(outputs)
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
    return outputs, check


def _io_meta(inputs: list, outputs: list) -> dict:
    return {
        "inputs": [
            {
                "shape": list(x.shape),
                "dtype": str(x.dtype),
                "generated": "normal(0, 1)" if x.dtype.kind == "f" else "zeros",
            }
            for x in inputs
        ],
        "outputs": [{"shape": list(o.shape), "dtype": str(o.dtype)} for o in outputs],
    }


def _delegation_meta(pmap, with_etrecord: bool) -> dict:
    """What was delegated, from the program map (delegated op counts need the ETRecord)."""
    delegates = [i for i in pmap.instructions if i.kind == "delegate"]
    kernels_ = [i for i in pmap.instructions if i.kind == "kernel"]
    return {
        "delegate_partitions": len(delegates),
        "delegated_ops": sum(len(i.op_types) for i in delegates) if with_etrecord else None,
        "non_delegated_ops": len(kernels_),
        "delegated_op_names": sorted({t for i in delegates for t in i.op_types}),
        "non_delegated_op_names": sorted({i.name for i in kernels_}),
    }
