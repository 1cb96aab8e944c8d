"""Mode B, proven: ExecuTorch built from source (EXECUTORCH_REPO) for linux-aarch64 as the SME2-on,
SME2-off and kernel-log runners, run under QEMU.

Under `-cpu max` (SME2 present, as on an SME2 board) the SME2-off build runs plain NEON kernels (F32,
QC8) while the SME2-on build runs the KleidiAI SME2 ones (PF32, PQS8); the kernel-log runner's
output fills the kernels table's microkernel and ISA columns, and `sme2 kernels --variant` shows the
GEMM/conv view side by side.

Skipped without EXECUTORCH_REPO. The ExecuTorch builds take long (docs/targets.md has the times
measured): they are cached under $SME2_SOURCE_HOME (a persistent data root for this tier; default a
temporary one, which builds everything again)."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import clirun

from kit import pipeline
from kit.core.settings import Measure
from kit.devices.transports.qemu import cpu_args
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.devices import inventory, toolsetup
from kit.profile import session
from kit.report import builder
from kit.store import warehouse

pytestmark = [
    pytest.mark.source,
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("EXECUTORCH_REPO"),
        reason="no ExecuTorch source tree: set EXECUTORCH_REPO (see docs/targets.md, 'Mode B')",
    ),
]

# An emulated SME2 board: QEMU -cpu max for both targets, the runner decides SME2 on or off.
DEVICES = """
[device.armv9-src]
transport = "qemu"
platform = "linux-aarch64"
recipe = "source"
threads = [1]
size = "small"
max_iterations = 5
"""


@pytest.fixture(scope="module")
def src_home(tmp_path_factory) -> DataRoot:
    chosen = os.environ.get("SME2_SOURCE_HOME") or tmp_path_factory.mktemp("sme2-source")
    root = DataRoot.resolve(chosen)
    root.user_devices.write_text(DEVICES)
    if not toolsetup.load_setup(root):
        toolsetup.setup(root)
    return root


def sme2(*args, home: DataRoot):
    return clirun.sme2(*args, home=home)


def test_generated_commands_configure_the_real_tree(tmp_path_factory):
    """The toolchain boundary with the real tree: the kit's configure command for each variant is
    accepted by ExecuTorch's CMake, and the SME2-off build compiles no SME2 microkernel at all."""
    from kit.devices.inventory import Device
    from kit.runners import source
    from kit.runners.toolchains import find_tool

    device = Device("armv9-src", "qemu", "linux-aarch64", recipe="source")
    sme2_sources = {}
    for sme2, log in ((True, False), (False, False), (True, True)):
        spec = source.spec_for(device, sme2, log)
        folder = tmp_path_factory.mktemp(spec.name)
        configure = spec.commands(folder, find_tool("cmake"), ninja=find_tool("ninja"))[0]
        done = subprocess.run(configure, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        cache = (folder / "build" / "CMakeCache.txt").read_text()
        flag = "ON" if sme2 else "OFF"
        assert f"XNNPACK_ENABLE_ARM_SME2:BOOL={flag}" in cache and f"XNNPACK_ENABLE_ARM_SME:BOOL={flag}" in cache
        assert "EXECUTORCH_BUILD_PYBIND:BOOL=OFF" in cache and "EXECUTORCH_BUILD_EXECUTOR_RUNNER:BOOL=OFF" in cache
        ninja_file = (folder / "build" / "build.ninja").read_text()
        sme2_sources[spec.name] = ninja_file.count("-neonsme2.c.o:")
        assert ("-DXNN_LOG_LEVEL=5" in ninja_file) is log
    assert sme2_sources["linux-aarch64-sme2-off"] == 0
    assert sme2_sources["linux-aarch64-sme2-on"] > 0 and sme2_sources["linux-aarch64-sme2-on-xnnlog"] > 0


@pytest.fixture(scope="module")
def runners(src_home):
    """`sme2 build-runner --recipe source` for the three variants (cached by sources, flags, toolchain)."""
    args = ["build-runner", "--target", "armv9-src.sme2-on", "--recipe", "source", "--json"]
    for v in ("sme2-off", "kernel-log", "sme2-on"):  # the proofs that need a source build first
        args += ["--variant", v]
    built = json.loads(sme2(*args, home=src_home).stdout)
    return {b["variant"]: b for b in built}


def test_three_source_runners_are_built_and_cached(runners, src_home):
    on, off, log = runners["sme2-on"], runners["sme2-off"], runners["kernel-log"]
    assert {on["recipe"], off["recipe"], log["recipe"]} == {"source"}
    assert on["platform"] == off["platform"] == "linux-aarch64"
    assert (on["sme2_build"], off["sme2_build"], log["sme2_build"]) == (True, False, True)
    assert (on["kernel_log"], off["kernel_log"], log["kernel_log"]) == (False, False, True)
    assert len({on["binary_sha256"], off["binary_sha256"], log["binary_sha256"]}) == 3
    builds = {b["executorch_build"] for b in runners.values()}
    assert len(builds) == 3 and all(b.startswith("linux-aarch64-sme2-") for b in builds)
    for b in runners.values():
        stamp = json.loads((src_home.runners / "executorch-source" / b["executorch_build"] / "build.json").read_text())
        assert stamp["identity"]["args"] and "XNNPACK_ENABLE_ARM_SME2" in " ".join(stamp["identity"]["args"])
    # Asking again rebuilds nothing: the same binaries, the same manifests.
    again = json.loads(
        sme2("build-runner", "--target", "armv9-src.sme2-off", "--recipe", "source", "--json", home=src_home).stdout
    )
    assert again["binary_sha256"] == off["binary_sha256"] and again["built_at"] == off["built_at"]


@pytest.fixture(scope="module")
def src_runs(src_home, runners):
    """tiny_seg fp32 and int8 on the emulated SME2 board, SME2 on and off (both under -cpu max)."""
    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32", "int8"],
        targets=["armv9-src.sme2-on", "armv9-src.sme2-off"],
        measure=Measure(iterations=5, warmup=1),
    )
    results = pipeline.profile_and_store(plan, src_home)
    return {(r.record.dtype, r.record.sme2): r for r in results}


def test_sme2_off_build_runs_neon_kernels_on_an_sme2_cpu(src_runs):
    for r in src_runs.values():
        assert r.record.conditions["cpu_setting"] == " ".join(cpu_args(True))  # SME2 present for both
        assert r.record.runner_recipe == "source" and r.record.conditions["recipe"] == "source"
    ops = {k: set(r.analysis.op_stats.op_type) for k, r in src_runs.items()}
    assert "Convolution (NHWC, PF32) IGEMM" in ops["fp32", True]
    assert not any("PF32" in o or "PQS8" in o for o in ops["fp32", False] | ops["int8", False])
    assert "Convolution (NHWC, F32) IGEMM" in ops["fp32", False]
    assert any(o.startswith("Convolution (NHWC, PQS8") for o in ops["int8", True])
    assert any(o.startswith("Convolution (NHWC, QC8)") for o in ops["int8", False])


@pytest.fixture(scope="module")
def kernel_log_runs(src_home):
    """The kernel-log runner (SME2 compiled in) on the CPU-switching emulated pair: -cpu max logs
    SME2 microkernels, -cpu max,sme=off plain NEON ones."""
    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32"],
        targets=["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"],
        kernel_log=True,
        measure=Measure(iterations=3, warmup=1),
    )
    results = pipeline.profile_and_store(plan, src_home)
    return {r.record.sme2: r for r in results}


def test_kernel_log_run_fills_microkernel_and_isa(src_home, kernel_log_runs):
    on = kernel_log_runs[True]
    assert on.record.runner == "native-xnnlog" and on.record.conditions["kernel_log"] is True
    wh = warehouse.Warehouse.at(src_home)
    rows = wh.query("SELECT * FROM kernels WHERE run_id = ?", [on.record.run_id])
    conv = rows[rows.op_type == "Convolution (NHWC, PF32) IGEMM"].iloc[0]
    assert conv.source == "kernel-log" and "__neonsme2" in conv.microkernel and conv.isa == "sme2"
    assert conv.microkernel.startswith("xnn_pf32_igemm")
    off = wh.query(
        "SELECT * FROM kernels WHERE run_id = ? AND op_type LIKE 'Convolution%'", [kernel_log_runs[False].record.run_id]
    )
    assert (off.source == "kernel-log").all() and off.microkernel.str.contains("__neon|_aarch64").all()
    assert not off.isa.str.contains("sme").any()


def test_sme2_kernels_shows_gemm_conv_side_by_side(src_home, kernel_log_runs):
    proc = sme2("kernels", "--variant", "tiny_seg-fp32", "--device", "armv9-qemu", "--json", home=src_home)
    rows = {r["operator"]: r for r in json.loads(proc.stdout)}
    conv = rows["Convolution IGEMM f32"]
    assert "__neonsme2" in conv["on_microkernel"] and conv["on_op_type"] == "Convolution (NHWC, PF32) IGEMM"
    assert "sme" not in conv["off_isa"] and conv["off_op_type"] == "Convolution (NHWC, F32) IGEMM"
    report = builder.build(src_home, "tiny_seg-fp32")
    text = Path(report.markdown).read_text()
    assert "Microkernels (kernel-log runs)" in text and "__neonsme2" in text


def test_kernel_log_refuses_sme2_off_on_an_sme2_board(src_home):
    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32"],
        targets=["armv9-src.sme2-off"],
        kernel_log=True,
        measure=Measure(iterations=3, warmup=1),
    )
    with pytest.raises(Sme2Error, match="kernel-log runner is built with SME2"):
        session.check_kernel_log(plan, [inventory.resolve("armv9-src.sme2-off", src_home)])
