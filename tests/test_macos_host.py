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
    assert "run `sme2 source fetch`" in info.value.hint and "EXECUTORCH_REPO=" in info.value.hint
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


# ---------------------------------------------------------------- the macOS arm64 wheel
# No Mac here: the executorch wheel a Mac would install is downloaded for its platform and the
# runner recipe is checked against its files: the same headers as the Linux wheel compiled here,
# and a real CMake configure of kit/runners/CMakeLists.txt for Darwin over its CMake package.

MAC_WHEEL_PLATFORM = "macosx_14_0_arm64"
RUNNER_TARGETS = ("runtime", "kernels_optimized", "kernels_quantized", "backend_xnnpack", "etdump", "threadpool")
LC_LOAD_DYLIB, LC_ID_DYLIB, LC_RPATH, LC_BUILD_VERSION = 0xC, 0xD, 0x8000001C, 0x32
CPU_TYPE_ARM64 = 0x0100000C


def macho(data: bytes) -> dict:
    """What a 64-bit Mach-O file says of itself: cpu, install name, libraries, run paths, minimum macOS."""
    import struct

    magic, cpu, _sub, _type, ncmds, _size, _flags, _res = struct.unpack_from("<IiiIIIII", data, 0)
    assert magic == 0xFEEDFACF, "not a 64-bit little-endian Mach-O file"
    info: dict = {"cpu": cpu, "loads": [], "rpaths": [], "id": None, "minos": None}
    offset = 32
    for _ in range(ncmds):
        cmd, size = struct.unpack_from("<II", data, offset)
        if cmd in (LC_LOAD_DYLIB, LC_ID_DYLIB, LC_RPATH):
            (name_at,) = struct.unpack_from("<I", data, offset + 8)
            name = data[offset + name_at : offset + size].split(b"\0")[0].decode()
            if cmd == LC_ID_DYLIB:
                info["id"] = name
            else:
                info["loads" if cmd == LC_LOAD_DYLIB else "rpaths"].append(name)
        elif cmd == LC_BUILD_VERSION:
            _platform, minos = struct.unpack_from("<II", data, offset + 8)
            info["minos"] = (minos >> 16, (minos >> 8) & 0xFF)
        offset += size
    return info


@pytest.fixture(scope="session")
def mac_wheel(tmp_path_factory) -> Path:
    """The executorch macOS arm64 wheel, unpacked (downloaded once into ~/.cache/sme2/wheels)."""
    import zipfile

    from kit.skills.contract import PINNED

    cache = Path(os.environ.get("SME2_WHEEL_CACHE", Path.home() / ".cache" / "sme2" / "wheels"))
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"executorch-{PINNED['executorch']}-cp311-cp311-macosx_*_arm64.whl"
    if not list(cache.glob(pattern)):
        argv = [sys.executable, "-m", "pip", "download", f"executorch=={PINNED['executorch']}", "--no-deps"]
        argv += ["--only-binary=:all:", "--platform", MAC_WHEEL_PLATFORM, "--python-version", "3.11", "-d", str(cache)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"pip could not download the macOS wheel:\n{proc.stderr[-2000:]}"
    wheel = sorted(cache.glob(pattern))[-1]
    out = tmp_path_factory.mktemp("mac-wheel")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(out)
    return out / "executorch"


def test_mac_wheel_carries_the_headers_the_runner_compiles_against_here(mac_wheel):
    """The macOS wheel's include tree is the Linux wheel's, byte for byte, and the Linux one is what
    the native runner compiles against on this machine (test_runners.py): the runner's source
    compiles on a Mac with the same headers. Its three includes are there."""
    import hashlib

    import executorch

    linux = Path(list(executorch.__path__)[0]) / "include"

    def tree(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
        }

    mac_headers = tree(mac_wheel / "include")
    assert mac_headers and mac_headers == tree(linux)
    source = (Path(__file__).parents[1] / "kit" / "runners" / "sme2_runner.cpp").read_text()
    includes = [
        line.split("<")[1].rstrip(">") for line in source.splitlines() if line.startswith("#include <executorch/")
    ]
    assert len(includes) == 3
    for header in includes:
        assert header in mac_headers


def test_runner_cmake_configures_for_darwin_against_the_mac_wheel(mac_wheel, tmp_path):
    """A real CMake configure of the runner for Darwin/arm64 over the wheel's CMake package: every
    library the runner links exists in the wheel, is arm64, is found through @rpath, and needs only
    system libraries or other libraries of the wheel's lib/ folder (what the bundle ships beside the
    binary); the run paths are relative to the binary; the wheel's minimum macOS is the one the
    recipe builds for; the compile definitions are the Linux wheel's."""
    from kit.runners.toolchains import MACOS_WHEEL_DEPLOYMENT_TARGET, SOURCE_DIR, find_tool, host_cmake_args

    args = host_cmake_args("macos-arm64")
    assert "-DCMAKE_OSX_ARCHITECTURES=arm64" in args and host_cmake_args("linux-x86_64") == ()
    config = next(p for p in (mac_wheel / "share/cmake", mac_wheel / "lib/cmake/ExecuTorch") if p.is_dir())
    build = tmp_path / "build"
    argv = [find_tool("cmake"), "-S", str(SOURCE_DIR), "-B", str(build), "-G", "Ninja"]
    argv += [f"-DCMAKE_MAKE_PROGRAM={find_tool('ninja')}", "-DCMAKE_SYSTEM_NAME=Darwin", "-DCMAKE_BUILD_TYPE=Release"]
    # No Apple clang here: CMake is told the compiler works, as it only generates the build graph.
    argv += ["-DCMAKE_CXX_COMPILER=c++", "-DCMAKE_CXX_COMPILER_WORKS=ON", f"-Dexecutorch_DIR={config}", *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ninja = (build / "build.ninja").read_text()
    link_libs = next(line for line in ninja.splitlines() if line.strip().startswith("LINK_LIBRARIES"))
    link_flags = next(line for line in ninja.splitlines() if line.strip().startswith("LINK_FLAGS"))
    linked = [Path(tok).resolve() for tok in link_libs.split("=", 1)[1].split()]
    assert {p.name for p in linked} == {
        "libexecutorch.dylib" if t == "runtime" else f"libexecutorch_{t}.dylib" for t in RUNNER_TARGETS
    }
    assert "-rpath,@loader_path/lib" in link_flags and "-rpath,/" not in link_flags  # relocatable
    defines = next(line for line in ninja.splitlines() if line.strip().startswith("DEFINES"))
    for d in ("C10_USING_CUSTOM_GENERATED_MACROS", "ET_EVENT_TRACER_ENABLED"):
        assert f"-D{d}" in defines

    lib_dir = (mac_wheel / "lib").resolve()
    shipped = {p.name for p in lib_dir.glob("*.dylib")}
    want = tuple(int(x) for x in MACOS_WHEEL_DEPLOYMENT_TARGET.split("."))
    for lib in linked:
        assert lib.parent == lib_dir and lib.is_file()
        info = macho(lib.read_bytes())
        assert info["cpu"] == CPU_TYPE_ARM64 and info["id"] == f"@rpath/{lib.name}"
        assert info["minos"] is not None and info["minos"] <= want, (lib.name, info["minos"])
        for dep in info["loads"]:
            assert dep.startswith(("/usr/lib/", "/System/Library/")) or dep.removeprefix("@rpath/") in shipped, dep


def test_a_mac_has_no_emulated_pair_and_is_told_why(home, monkeypatch):
    """qemu-user is Linux-only: on a Mac the default targets are the host's, the armv9-qemu rows of
    `sme2 devices` say why they are unavailable, and `sme2 setup` refuses naming what to do."""
    from kit import pipeline
    from kit.core import platforms
    from kit.devices import toolsetup

    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    mac = recorded_mac()
    assert pipeline.target_partitions(home, host=mac) == ["host.sme2-on"]
    rows = {r["device"]: r for r in inventory.survey(home, host=mac)}
    qemu = rows["armv9-qemu"]
    assert qemu["targets"] == [] and "Linux only" in qemu["status"] and "macos-arm64" in qemu["status"]
    with pytest.raises(TargetError, match="Linux only"):
        _ = inventory.resolve("armv9-qemu.sme2-on", home, host=mac).transport
    monkeypatch.setattr(platforms, "HOST_PLATFORM", "macos-arm64")
    with pytest.raises(toolsetup.SetupError, match="need Linux") as info:
        toolsetup.setup(home)
    assert "host.sme2-on" in info.value.hint


def test_env_setup_on_a_mac_needs_no_emulator_and_accepts_its_pythons(home, monkeypatch):
    from kit.core import platforms
    from kit.skills import checks
    from kit.skills.contract import Scope

    monkeypatch.setattr(platforms, "HOST_PLATFORM", "macos-arm64")
    monkeypatch.setenv("SME2_TOOLS", str(home.path / "no-tools"))  # nothing set up
    problems = checks.check_env(home, Scope())
    assert not [p for p in problems if "emulat" in p.message.lower() or "qemu" in p.message.lower()]
    monkeypatch.setattr(platforms, "HOST_PLATFORM", "linux-x86_64")
    assert [p for p in checks.check_env(home, Scope()) if "emulated" in p.message or "qemu" in p.message.lower()]
    assert (3, 10) in checks.PYTHONS and (3, 13) in checks.PYTHONS and (3, 14) not in checks.PYTHONS
