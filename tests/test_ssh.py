"""The ssh transport against a real sshd on 127.0.0.1: profiling, and a device that disappears,
fills up or loses a library."""

import shutil
import subprocess
import threading
import time

import pytest

from kit import pipeline
from kit.core.errors import RunnerError, TargetError
from kit.core.settings import Measure
from kit.devices import inventory
from kit.profile import session
from tests.sshd import SSHD, Sshd

pytestmark = [
    pytest.mark.ssh,
    pytest.mark.skipif(
        not shutil.which(SSHD) and not __import__("os").path.exists(SSHD),
        reason="openssh-server is not installed (scripts/setup.sh installs it)",
    ),
]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ssh_home(home, sshd, exports, tmp_path_factory):
    """The session data root (with the fp32 export) plus a user devices.toml with the loopback ssh device."""
    exports["fp32"]
    remote = tmp_path_factory.mktemp("device")
    home.user_devices.write_text(sshd.device_toml("loopback", remote))
    yield home
    home.user_devices.unlink()


def _plan(iterations: int = 5, **measure):
    return session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32"],
        targets=["loopback.sme2-off"],
        measure=Measure(iterations=iterations, warmup=1, **measure),
    )


def test_ssh_device_is_listed_with_detected_capabilities(ssh_home):
    rows = {r["device"]: r for r in inventory.survey(ssh_home)}
    assert rows["loopback"]["status"] == "ok" and rows["loopback"]["sme2_detected"] is False
    assert rows["loopback"]["targets"] == ["loopback.sme2-off"]


def test_profile_over_ssh(ssh_home, exports):
    (r,) = pipeline.profile_and_store(_plan(), ssh_home)
    rec = r.record
    assert rec.transport == "ssh" and not rec.emulated and rec.conditions["host"] == "127.0.0.1"
    assert r.analysis.op_stats.op_type.str.startswith("Convolution").any()
    assert (r.run_dir / "etdump.etdp").stat().st_size > 0
    # The runner bundle is pushed once and reused; run folders on the device are cleaned up.
    (r2,) = pipeline.profile_and_store(_plan(), ssh_home)
    t = inventory.resolve("loopback.sme2-off", ssh_home).transport
    assert len(t.shell(["ls", f"{t.remote_dir}/runners"]).stdout.split()) == 1
    assert t.shell(["ls", f"{t.remote_dir}/work"]).stdout.split() == []


def test_device_disappearing_mid_run_is_a_clear_error_and_keeps_nothing(ssh_home, sshd, exports):
    before = set(ssh_home.runs.iterdir())
    errors = []

    def run():
        try:
            pipeline.profile_and_store(_plan(iterations=100_000, timeout_s=120), ssh_home)
        except Exception as e:  # noqa: BLE001 - the assertion below names it
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    t = inventory.resolve("loopback.sme2-off", ssh_home).transport
    deadline = time.time() + 60
    while (
        time.time() < deadline
        and "sme2_runner" not in subprocess.run(["pgrep", "-af", "sme2_runner"], capture_output=True, text=True).stdout
    ):
        time.sleep(0.2)
    sshd.stop()
    worker.join(180)
    subprocess.run(["pkill", "-9", "-f", f"{t.remote_dir}/runners"], capture_output=True)
    assert errors and isinstance(errors[0], TargetError), errors
    assert "became unreachable" in errors[0].message
    assert set(ssh_home.runs.iterdir()) == before  # nothing partial kept
    sshd.start()
    (r,) = pipeline.profile_and_store(_plan(), ssh_home)  # the next run works
    assert r.record.transport == "ssh"


def test_missing_library_on_the_device_is_repaired_by_the_next_run(ssh_home, exports):
    (r,) = pipeline.profile_and_store(_plan(), ssh_home)
    t = inventory.resolve("loopback.sme2-off", ssh_home).transport
    (bundle,) = t.shell(["ls", f"{t.remote_dir}/runners"]).stdout.split()
    t.shell(["rm", f"{t.remote_dir}/runners/{bundle}/lib/libexecutorch_backend_xnnpack.so"])
    with pytest.raises(RunnerError, match="shared librar") as info:
        pipeline.profile_and_store(_plan(), ssh_home)
    assert "re-run" in info.value.hint
    (r,) = pipeline.profile_and_store(_plan(), ssh_home)
    assert r.record.transport == "ssh"


def test_full_disk_on_the_device_is_a_clear_error(ssh_home, sshd, exports, tmp_path):
    mnt = tmp_path / "tiny-disk"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    saved = ssh_home.user_devices.read_text()
    try:
        ssh_home.user_devices.write_text(sshd.device_toml("fulldisk", mnt))
        before = set(ssh_home.runs.iterdir())
        with pytest.raises(RunnerError, match="no space left in .*KB free") as info:
            pipeline.profile_and_store(
                session.ProfilePlan(
                    model="tiny_seg",
                    dtypes=["fp32"],
                    targets=["fulldisk.sme2-off"],
                    measure=Measure(iterations=3, warmup=1),
                ),
                ssh_home,
            )
        assert "out of disk space" in info.value.hint
        assert set(ssh_home.runs.iterdir()) == before
        assert not [p for p in (mnt / "runners").iterdir()] if (mnt / "runners").exists() else True  # no half bundle
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
        ssh_home.user_devices.write_text(saved)
