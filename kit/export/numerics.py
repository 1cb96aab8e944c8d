"""The numerical check: run the program once in a child process on its saved inputs and compare
its outputs with the eager reference, `max |pte - reference| / max |reference|` against the
dtype's tolerance, with NaN and inf counted so a failure says what it is. The exporter gates on it,
an imported program is traced by the same run, and `check_program` re-runs it on an existing
export: one idea, kept apart from how the program was made."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from kit.core.errors import ExportError, RunnerError
from kit.core.home import DataRoot
from kit.devices.transports.local import LocalTransport
from kit.export.artifact import Export
from kit.runners import invoke, tensorfile
from kit.runners.build import build_runner
from kit.trace import etdump, program

# Max |pte - reference| / max |reference|. int8 compares with the quantized (fake-quant) model,
# so the tolerance covers kernel rounding, not quantization error (recorded separately).
TOLERANCES = {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.15, "int8-dynamic": 0.15}


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
    check["nan_outputs"], check["inf_outputs"] = count_non_finite(outputs)
    check["nan_reference"], check["inf_reference"] = count_non_finite(reference)
    check["output_values"] = int(sum(o.size for o in outputs))
    if check["nan_outputs"] or check["inf_outputs"]:
        check["passed"] = False
    return check


def count_non_finite(arrays: list[np.ndarray]) -> tuple[int, int]:
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
