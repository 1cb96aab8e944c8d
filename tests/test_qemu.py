"""The emulated Armv9 pair: real SME2 kernel selection under QEMU, SME2 on versus off."""

import pytest

from kit.devices import toolsetup
from kit.devices.transports.qemu import cpu_args
from kit.export import numerics
from kit.runners import tensorfile

pytestmark = pytest.mark.qemu  # every test here needs the emulated SME2 pair


def test_setup_proves_sme2_switching(qemu_setup, home):
    assert tuple(int(x) for x in qemu_setup["qemu_version"].split(".")) >= toolsetup.MIN_QEMU
    assert qemu_setup["probe"]["sme2-on"]["sme2"] and not qemu_setup["probe"]["sme2-off"]["sme2"]
    assert toolsetup.find_qemu(home) is not None
    # A second setup finds everything in place.
    assert toolsetup.setup(home)["qemu"] == qemu_setup["qemu"]


SME2_ONLY = {"fp32": "PF32", "int8": "PQS8"}


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_conv_and_gemm_use_sme2_kernels_only_with_sme2(qemu_runs, dtype):
    tag = SME2_ONLY[dtype]
    for sme2 in (True, False):
        ops = qemu_runs[(dtype, sme2)].analysis.op_stats
        compute = ops[ops.op_type.str.startswith(("Convolution", "Fully Connected"))]
        assert len(compute) >= 2
        tagged = compute.op_type.str.contains(rf"\b{tag}\b")
        if sme2:
            assert tagged.all(), f"SME2 on but not {tag}: {list(compute.op_type[~tagged])}"
            assert (compute.kernel_hint == f"kleidiai:{tag}").all()
        else:
            assert not tagged.any(), f"SME2 off but {tag}: {list(compute.op_type[tagged])}"


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_sme2_on_and_off_outputs_agree(qemu_runs, exports, dtype):
    """A fast wrong kernel is not a win: both runs must match each other and the eager reference."""
    on, off = (tensorfile.load(qemu_runs[(dtype, s)].run_dir / "timing_outputs.bin") for s in (True, False))
    tol = numerics.TOLERANCES[dtype]
    _, rel = numerics.relative_error(on, off)
    assert rel <= tol, f"SME2 on and off disagree by {rel:.3g} (tolerance {tol})"
    reference = tensorfile.load(exports[dtype].folder / "reference.bin")
    for outputs in (on, off):
        assert numerics.relative_error(outputs, reference)[1] <= tol


def test_emulated_runs_are_labelled_and_capped(qemu_runs):
    for (_dtype, sme2), r in qemu_runs.items():
        rec = r.record
        assert rec.emulated and rec.transport == "qemu" and rec.platform == "linux-aarch64"
        assert rec.size == "small" and rec.iterations == 10  # asked for 50: emulated targets cap at 10
        assert rec.conditions["cpu_setting"] == " ".join(cpu_args(sme2))
        assert rec.conditions["emulated"] is True


def test_pairs_are_interleaved_in_blocks(qemu_runs):
    order = sorted(qemu_runs.values(), key=lambda r: r.record.conditions["measurement_window"][0])
    assert [r.record.sme2 for r in order] == [True, True, False, False]  # block on (fp32, int8), block off
