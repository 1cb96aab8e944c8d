"""A label that cannot lie: a run whose trace contradicts its SME2 flag is refused, nothing of it is
stored, and its folder is kept under refused/ (never under runs/, which recovery ingests).

The mislabelled runs are real: the emulated Armv9 CPU runs the wheel runner with SME2 on while the
target says sme2-off (a QEMU transport that forces SME2, as an SME2 board would), and the other way
round."""

import json

import pytest

from kit.core.errors import LabelError, TargetError
from kit.core.names import Target
from kit.devices import inventory
from kit.devices.transports.qemu import QemuTransport
from kit.profile import session
from kit.runners import recipes
from kit.store import ingest, recovery, warehouse
from kit.trace.kernels import label_problem


def test_label_rules_on_operator_names():
    on_fp32 = ["Convolution (NHWC, PF32) IGEMM", "Fully Connected (NC, PF32) GEMM", "Transpose (ND, X32)"]
    off_fp32 = ["Convolution (NHWC, F32) IGEMM", "Fully Connected (NC, F32) GEMM", "Transpose (ND, X32)"]
    on_int8 = ["Convolution (NHWC, PQS8, QS8, QC8W) IGEMM", "Convert (NC, F32, QS8)"]
    off_int8 = ["Convolution (NHWC, QC8) IGEMM", "Fully Connected (NC, QS8, QC8W) GEMM"]
    assert label_problem(on_fp32, True, "fp32") is None and label_problem(off_fp32, False, "fp32") is None
    assert label_problem(on_int8, True, "int8") is None and label_problem(off_int8, False, "int8") is None
    assert "SME2-only kernels under an sme2-off label" in label_problem(on_fp32, False, "fp32")
    assert "Convolution (NHWC, PQS8, QS8, QC8W) IGEMM" in label_problem(on_int8, False, "int8")
    assert "no SME2 kernel under an sme2-on label" in label_problem(off_fp32, True, "fp32")
    assert "no SME2 kernel" in label_problem(off_int8, True, "int8")
    # fp16 (PF16) and dynamic int8 (QP8) kernels also run without SME2: not judged either way.
    assert label_problem(["Convolution (NHWC, F16) IGEMM"], True, "fp16") is None
    assert label_problem(["Fully Connected (NC, QP8, F32, QC4W) GEMM"], False, "int8-dynamic") is None
    # No conv/GEMM at all: nothing to judge an sme2-on label by.
    assert label_problem(["Transpose (ND, X32)", "aten::add"], True, "fp32") is None


def _forced(home, device_name: str, label_sme2: bool, cpu_sme2: bool) -> inventory.ResolvedTarget:
    """A target labelled `label_sme2` whose emulated CPU runs with SME2 `cpu_sme2` (the wheel runner
    follows the CPU, as on a board whose detection was wrong)."""
    dev = inventory.Device(device_name, "qemu", "linux-aarch64", max_iterations=5)
    real = inventory.make_transport(dev, home, cpu_sme2)
    assert isinstance(real, QemuTransport) and real.sme2 is cpu_sme2
    return inventory.ResolvedTarget(Target(device_name, label_sme2), dev, real, "wheel")


def _stored(home, run_id: str) -> int:
    wh = warehouse.Warehouse.at(home)
    wh.ensure()
    total = 0
    for table in ("runs", "op_events", "op_stats", "latency_samples"):
        total += int(wh.query(f"SELECT count(*) AS n FROM {table} WHERE run_id = ?", [run_id]).n[0])
    return total


@pytest.mark.qemu
@pytest.mark.slow
@pytest.mark.parametrize(
    "dtype,label_sme2,reason",
    [("fp32", False, "SME2-only kernels under an sme2-off label"), ("int8", True, "no SME2 kernel")],
)
def test_mislabelled_run_is_refused_and_kept_aside(home, qemu_setup, exports, dtype, label_sme2, reason):
    resolved = _forced(home, "sme2board", label_sme2=label_sme2, cpu_sme2=not label_sme2)
    binary = recipes.runner_for(resolved, home, "native")
    before = set(p.name for p in home.runs.iterdir())
    stored = []
    with pytest.raises(LabelError, match=reason) as info:
        result = session.run_session(
            home,
            exports[dtype],
            resolved,
            session.Measurement(threads=1, iterations=3, warmup=1, runner_kind="native", binary=binary),
        )
        stored.append(ingest.ingest_run(home, result.run_dir))  # never reached
    assert not stored
    message = str(info.value)
    assert "nothing was stored" in message and str(home.refused) in message
    if not label_sme2:
        assert "build an SME2-off runner (sme2 source fetch, then the source recipe" in info.value.hint
    # The folder is kept for inspection, outside runs/, with the reason.
    kept = [p for p in home.refused.iterdir() if p.name in message]
    assert len(kept) == 1
    folder = kept[0]
    refused = json.loads((folder / session.REFUSED_FILE).read_text())
    assert reason in refused["reason"] and refused["target"] == resolved.target.key
    assert (folder / "etdump.etdp").stat().st_size > 0 and (folder / "run.json").exists()
    run_id = refused["run_id"]
    assert set(p.name for p in home.runs.iterdir()) == before  # nothing new under runs/, not even staging
    # Recovery (every start runs it) does not ingest it, and nothing of it is in the warehouse.
    done = recovery.recover(home)
    assert run_id not in done.recovered
    assert _stored(home, run_id) == 0
    assert (
        warehouse.Warehouse.at(home)
        .query("SELECT count(*) AS n FROM runs WHERE target = ?", [resolved.target.key])
        .n[0]
        == 0
    )


@pytest.mark.qemu
def test_emulated_sme2_board_asked_for_sme2_off_says_what_to_build(home, qemu_setup, monkeypatch, tmp_path):
    """A device that stands for SME2 hardware (`sme2 = true`) runs -cpu max for both targets, so the
    wheel runner cannot give SME2 off: refused before anything runs, naming the build to make."""
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    extra = tmp_path / "devices.toml"
    extra.write_text('[device.sme2board]\ntransport = "qemu"\nplatform = "linux-aarch64"\nsme2 = true\n')
    registry = inventory.load_registry(home, extra)
    on = inventory.resolve("sme2board.sme2-on", home, registry)
    assert on.transport.sme2 is True and on.recipe == "wheel"
    with pytest.raises(TargetError, match="cannot be switched off with the wheel runner") as info:
        inventory.resolve("sme2board.sme2-off", home, registry)
    assert "run `sme2 source fetch`" in info.value.hint and "EXECUTORCH_REPO=" in info.value.hint
    # The default emulated pair switches the CPU instead, and stays allowed.
    assert inventory.resolve("armv9-qemu.sme2-off", home).transport.sme2 is False
