"""macOS arm64 as a host platform, tested on an M4's recorded `uname`/`sysctl` outputs fed through
the local transport's `Host`: platform mapping, SME2 detection, the conditions a run records,
target resolution (wheel runner for SME2 on, source-built runner for SME2 off) and `sme2 devices`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from kit.cli.devices import devices_table
from kit.core.errors import TargetError
from kit.core.names import Target
from kit.core.platforms import platform_of
from kit.devices import conditions, inventory
from kit.devices.transports.local import MACOS_SYSCTLS, Host, LocalTransport

M4 = Path(__file__).parent / "data" / "macos-m4"
# argv -> the file holding that command's recorded stdout
M4_COMMANDS = {
    "sysctl hw.optional.arm": "sysctl-hw.optional.arm.txt",
    "sysctl hw.optional.arm.FEAT_SME2": "sysctl-hw.optional.arm.FEAT_SME2.txt",
    "sysctl hw.ncpu": "sysctl-hw.ncpu.txt",
    "sysctl " + " ".join(MACOS_SYSCTLS): "sysctl-info.txt",
}


def recorded_mac(commands_seen: list | None = None) -> Host:
    """The M4 as the local transport sees it: `uname -s`/`-m` and a command reader over recordings.
    There is no /proc on a Mac: every file read answers None, as it would there."""

    def command(argv):
        if commands_seen is not None:
            commands_seen.append(argv)
        name = M4_COMMANDS.get(" ".join(argv))
        return (M4 / name).read_text() if name else None

    return Host(
        (M4 / "uname-s.txt").read_text(), (M4 / "uname-m.txt").read_text(), read=lambda path: None, command=command
    )


def test_platform_is_mapped_from_the_os_and_the_machine():
    assert platform_of("Darwin\n", "arm64\n") == "macos-arm64"
    assert platform_of("Linux", "arm64") == "linux-aarch64" and platform_of("Linux", "aarch64") == "linux-aarch64"
    assert platform_of("Linux", "x86_64") == "linux-x86_64"
    assert recorded_mac().platform == "macos-arm64"


def test_sme2_is_detected_through_sysctl_and_the_arm_family_recorded():
    seen = []
    mac = recorded_mac(seen)
    assert mac.detect_sme2() is True
    assert ["sysctl", "hw.optional.arm.FEAT_SME2"] in seen  # sysctl, never /proc/cpuinfo
    info = LocalTransport("host", host=mac).describe()
    assert info["cpu_model"] == "Apple M4" and info["cores"] == 10
    assert (info["performance_cores"], info["efficiency_cores"]) == (4, 6)
    assert info["sme2_detected"] is True and info["os"] == "macOS 15.3.1"
    arm = info["hw_optional_arm"]
    assert arm["FEAT_SME2"] == 1 and arm["FEAT_SME"] == 1 and arm["SME_I8I32"] == 1 and arm["FEAT_I8MM"] == 1
    assert arm["sme_max_svl_b"] == 64 and "caps" in arm
    # An M3 (no SME) answers 0: detected as no SME2.
    no_sme = Host("Darwin", "arm64", read=lambda p: None, command=lambda argv: "hw.optional.arm.FEAT_SME2: 0\n")
    assert no_sme.detect_sme2() is False
    assert conditions.arm_features({"hw.optional.arm.FEAT_SME2": "1", "hw.ncpu": "10"}) == {"FEAT_SME2": 1}


def test_a_mac_is_never_pinned_with_taskset(home):
    dev = inventory.Device("host", "local", "macos-arm64", affinity="fastest")
    resolved = inventory.ResolvedTarget(Target("host", True), dev, LocalTransport("host", host=recorded_mac()))
    assert resolved.affinity_for(1) is None
    assert LocalTransport("host", host=recorded_mac()).core_count() == 10


def test_target_resolution_on_a_recorded_m4(home, monkeypatch, tmp_path):
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    mac = recorded_mac()
    registry = inventory.load_registry(home, host=mac)
    assert registry["host"].platform == "macos-arm64"
    on = inventory.resolve("host.sme2-on", home, host=mac)
    assert on.recipe == "wheel" and on.transport.detect_sme2() is True
    cond = on.conditions()
    assert cond["platform"] == "macos-arm64" and cond["hw_optional_arm"]["FEAT_SME2"] == 1
    # SME2 off: the wheel runner would run SME2 kernels and mislabel the data; refused with what to build.
    with pytest.raises(TargetError, match="cannot be switched off with the wheel runner") as info:
        inventory.resolve("host.sme2-off", home, host=mac)
    assert 'build an SME2-off runner: recipe = "source" with EXECUTORCH_REPO=' in info.value.hint
    assert "docs/targets.md" in info.value.hint
    monkeypatch.setenv("EXECUTORCH_REPO", str(tmp_path / "executorch"))
    off = inventory.resolve("host.sme2-off", home, host=mac)
    assert off.recipe == "source" and off.conditions()["recipe"] == "source"


def test_devices_survey_on_a_recorded_m4(home, monkeypatch):
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    rows = {r["device"]: r for r in inventory.survey(home, host=recorded_mac())}
    host = rows["host"]
    assert host["platform"] == "macos-arm64" and host["sme2_detected"] is True and host["cpu_model"] == "Apple M4"
    plans = {p["target"]: p for p in host["plans"]}
    assert plans["host.sme2-on"]["ok"] and plans["host.sme2-on"]["recipe"] == "wheel"
    off = plans["host.sme2-off"]
    assert not off["ok"] and off["recipe"] == "source" and off["runner"] == "source sme2-off"
    assert "ExecuTorch source tree" in off["missing"][0] and "EXECUTORCH_REPO" in off["todo"][0]
    assert host["targets"] == ["host.sme2-on"]
    console = Console(record=True, width=250)
    console.print(devices_table(list(rows.values()), home.user_devices))
    text = console.export_text()
    assert "host.sme2-off" in text and "source sme2-off" in text and "needs an ExecuTorch source tree" in text
    assert "Apple M4" in text


def test_devices_survey_says_what_each_device_lacks(home, monkeypatch, tmp_path):
    """This x86 machine has no SME2; a phone entry without an NDK; a board with SME2 and the wheel."""
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    monkeypatch.delenv("ANDROID_NDK", raising=False)
    extra = tmp_path / "devices.toml"
    extra.write_text(
        '[device.x300]\ntransport = "adb"\nplatform = "android-arm64-v8a"\nrecipe = "source"\nserial = "10AD5F00RZ"\n'
        'executorch_repo = "/src/executorch"\nsme2 = true\n'
        '[device.board]\ntransport = "ssh"\nplatform = "linux-aarch64"\nhost = "board.lan"\nsme2 = true\n'
    )
    linux = Host("Linux", "x86_64", read=lambda p: "processor: 0\nflags: fpu sse avx2\n")
    registry = inventory.load_registry(home, extra, host=linux)
    plan = {
        (d.name, t.key): inventory.plan_target(d, t, d.props.get("sme2", False), "linux-x86_64")
        for d in registry.values()
        if d.transport != "qemu"
        for t in d.targets()
    }
    assert "SME2 hardware" in plan["host", "host.sme2-on"].missing[0][0] and plan["host", "host.sme2-off"].ok
    assert [m for m, _ in plan["x300", "x300.sme2-off"].missing] == ["the Android NDK"]
    assert plan["x300", "x300.sme2-on"].runner == "source sme2-on"
    assert plan["board", "board.sme2-on"].ok and plan["board", "board.sme2-on"].recipe == "wheel"
    assert "cannot be switched off" in plan["board", "board.sme2-off"].missing[0][0]


@pytest.mark.slow
def test_sme2_devices_json_lists_recipes_per_target(home):
    env = {**os.environ, "SME2_HOME": str(home.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", "devices", "--no-detect", "--json"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    qemu = {p["target"]: p for p in rows["armv9-qemu"]["plans"]}
    assert qemu["armv9-qemu.sme2-on"]["recipe"] == "wheel" and qemu["armv9-qemu.sme2-off"]["ok"]
    assert {p["target"] for p in rows["host"]["plans"]} == {"host.sme2-on", "host.sme2-off"}
