"""Export of every dtype of the default model, the numerical check, and the artifact contract."""

import json

import numpy as np
import pytest

from kit.core.errors import ExportError
from kit.export import artifact, exporter, lowering, numerics
from kit.runners import tensorfile
from tests.conftest import DTYPES


# fp32 in the fast tier; each other dtype is one more real export (20-60 s on 2 cores).
@pytest.mark.parametrize("dtype", [d if d == "fp32" else pytest.param(d, marks=pytest.mark.slow) for d in DTYPES])
def test_export_writes_the_artifact_contract(exports, dtype):
    exp = exports[dtype]
    meta = json.loads((exp.folder / "export_meta.json").read_text())
    assert exp.pte.name == f"tiny_seg_xnnpack_{dtype.replace('-', '_')}.pte"
    assert exp.etrecord.exists() and exp.etrecord.stat().st_size > 0
    from kit.core.atomic import sha256_file

    assert meta["pte_sha256"] == sha256_file(exp.pte)
    assert (
        meta["numerical_check"]["passed"]
        and meta["numerical_check"]["max_rel_error"] <= meta["numerical_check"]["tolerance"]
    )
    assert meta["delegate_partitions"] >= 1 and meta["delegated_ops"] > 0
    # GroupNorm and LayerNorm are never delegated to XNNPACK: the graph breaks the model is built for.
    assert {"aten_native_group_norm_default", "aten_native_layer_norm_default"} <= set(meta["non_delegated_op_names"])
    inputs = tensorfile.load(exp.inputs)
    assert [list(x.shape) for x in inputs] == [i["shape"] for i in meta["inputs"]] == [[1, 3, 64, 64]]
    assert str(inputs[0].dtype) == ("float16" if dtype == "fp16" else "float32")
    assert meta["versions"]["torch"].startswith("2.13.0") and meta["versions"]["executorch"] == "1.5.1"
    assert meta["export_seconds"] > 0 and meta["instructions"] == len(exp.program_map.instructions)


@pytest.mark.slow
def test_int8_variants_delegate_quantized_compute(exports):
    for dtype in ("int8", "int8-dynamic"):
        ops = exports[dtype].meta["by_operator"]
        assert ops["aten_convolution_default"]["delegated"] > 0
        assert ops["aten_convolution_default"]["non_delegated"] == 0
    assert (
        exports["int8"].meta["numerical_check"]["error_vs_fp32_eager"]
        > exports["int8"].meta["numerical_check"]["max_rel_error"] / 10
    )


def test_reexport_is_a_noop(exports, tiny, home):
    again = exporter.export_variant(tiny, "fp32", "small", home)
    assert again.meta["exported_at"] == exports["fp32"].meta["exported_at"]


def test_numerical_check_catches_a_wrong_program(exports, tiny):
    """The fp32 program checked against a model whose weights were altered must fail."""
    import torch

    model = tiny.spec.build(tiny.spec.size("small"), None)
    with torch.no_grad():
        model.stem.weight.mul_(1.5)
    altered = lowering.to_numpy(model(*[torch.from_numpy(x) for x in tensorfile.load(exports["fp32"].inputs)]))
    check = numerics.check_program(exports["fp32"], altered)
    assert not check["passed"] and check["max_rel_error"] > 0.01
    assert numerics.check_program(exports["fp32"])["passed"]


def test_numerical_check_is_a_pure_comparison():
    ref = [np.ones((2, 2), np.float32)]
    assert numerics.numerical_check([ref[0] + 1e-5], ref, "fp32")["passed"]
    assert not numerics.numerical_check([ref[0] * 1.1], ref, "fp32")["passed"]
    assert not numerics.numerical_check([np.ones((3,), np.float32)], ref, "fp32")["passed"]


def test_portable_backend_is_a_no_delegate_baseline(tiny, home):
    exp = exporter.export_variant(tiny, "fp32", "small", home, backend="portable")
    assert exp.meta["delegate_partitions"] == 0 and exp.meta["delegated_ops"] == 0
    assert exp.folder.name == "tiny_seg-fp32-portable-small" and exp.pte.name == "tiny_seg_portable_fp32.pte"


def test_loading_a_folder_without_meta_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="export_meta.json"):
        artifact.load(tmp_path)
