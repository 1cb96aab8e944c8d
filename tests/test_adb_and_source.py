"""The adb transport and the source recipe, up to the device and toolchain boundary: no phone,
ExecuTorch checkout or NDK exists here, so argv, parsing and the errors are what is tested."""

import pytest

from kit.core.errors import RunnerError, TargetError
from kit.devices import conditions, inventory
from kit.devices.transports.adb import AdbTransport, cpu_mask, parse_devices, settings_argvs
from kit.devices.transports.base import Completed
from kit.runners import recipes, source

ADB_DEVICES = "List of devices attached\n* daemon started successfully\n10AD5F00RZ\tdevice\nemulator-5554\toffline\nR5CT4ABC\tunauthorized\n\n"
GETPROP = "[ro.product.model]: [vivo X300]\n[ro.soc.model]: [MT6993]\n[ro.board.platform]: [mt6993]\n[ro.build.version.release]: [16]\n"


def test_adb_devices_parsing():
    assert parse_devices(ADB_DEVICES) == {
        "10AD5F00RZ": "device",
        "emulator-5554": "offline",
        "R5CT4ABC": "unauthorized",
    }


def test_getprop_parsing():
    props = conditions.parse_getprop(GETPROP)
    assert props["ro.product.model"] == "vivo X300" and props["ro.soc.model"] == "MT6993"


def test_taskset_mask_for_toybox():
    assert cpu_mask("7") == "80" and cpu_mask("4-7") == "f0" and cpu_mask("0,2") == "5"


def test_adb_argv_quotes_for_the_device_shell():
    t = AdbTransport("phone", serial="10AD5F00RZ", remote_dir="/data/local/tmp/sme2")
    argv = t.remote_argv(
        ["/data/local/tmp/sme2/runners/ab/sme2_runner", "--model", "/data/local/tmp/sme2/work/x y/p.pte"],
        {"FOO": "1"},
        "7",
    )
    assert argv[:3] == ["env", "LD_LIBRARY_PATH=/data/local/tmp/sme2/runners/ab/lib", "FOO=1"]
    assert argv[3:5] == ["taskset", "80"]
    shell = t.shell_argv(argv)
    assert shell[:4] == ["adb", "-s", "10AD5F00RZ", "shell"] and len(shell) == 5
    assert "'/data/local/tmp/sme2/work/x y/p.pte'" in shell[4]  # quoted, never a bare user string
    assert t.adb_argv("push", "a", "b") == ["adb", "-s", "10AD5F00RZ", "push", "a", "b"]
    assert settings_argvs(0)[0] == ["settings", "put", "global", "window_animation_scale", "0"]


def test_adb_lost_device_is_recognised():
    t = AdbTransport("phone", serial="S")
    assert t.lost(Completed([], 1, "", "error: device 'S' not found", 0.1))
    assert t.lost(Completed([], 1, "", "error: device offline", 0.1))
    assert not t.lost(Completed([], 2, "", "sme2_runner: error: cannot load method forward", 0.1))


def test_adb_needs_a_serial_and_adb(home, monkeypatch):
    dev = inventory.Device("phone", "adb", "android-arm64-v8a", recipe="source")
    with pytest.raises(TargetError, match="has no serial"):
        AdbTransport.from_device(dev, home)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TargetError, match="adb is not installed"):
        AdbTransport("phone", serial="S").prepare()


@pytest.mark.parametrize("platform", ["android-arm64-v8a", "macos-arm64", "linux-aarch64"])
@pytest.mark.parametrize("sme2", [True, False])
def test_source_build_commands_follow_the_table(tmp_path, platform, sme2):
    spec = source.SourceBuild(tmp_path / "executorch", platform, sme2, kernel_log=False, ndk=tmp_path / "ndk")
    configure, build = spec.commands(tmp_path / "b", cmake="cmake")
    assert configure[:3] == ["cmake", "-S", str(tmp_path / "executorch")]
    for flag in (
        "-DEXECUTORCH_BUILD_XNNPACK=ON",
        "-DEXECUTORCH_BUILD_DEVTOOLS=ON",
        "-DEXECUTORCH_ENABLE_EVENT_TRACER=ON",
    ):
        assert flag in configure
    state = "ON" if sme2 else "OFF"
    assert f"-DXNNPACK_ENABLE_ARM_SME2={state}" in configure and f"-DXNNPACK_ENABLE_ARM_SME={state}" in configure
    assert build[-4:] == ["--target", "install", "--parallel", "2"]
    if platform == "android-arm64-v8a":
        assert (
            f"-DCMAKE_TOOLCHAIN_FILE={tmp_path / 'ndk'}/build/cmake/android.toolchain.cmake" in configure
            and "-DANDROID_ABI=arm64-v8a" in configure
        )
    if platform == "macos-arm64":
        assert "-DCMAKE_OSX_ARCHITECTURES=arm64" in configure
    assert not any("XNN_LOG_LEVEL" in a for a in configure)
    assert spec.name == f"{platform}-sme2-{'on' if sme2 else 'off'}"


def test_kernel_log_variant_enables_xnnpack_logging(tmp_path):
    configure, _ = source.SourceBuild(tmp_path, "android-arm64-v8a", True, kernel_log=True, ndk=tmp_path).commands(
        tmp_path
    )
    assert "-DCMAKE_CXX_FLAGS=-march=armv9-a -UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5" in configure
    configure, _ = source.SourceBuild(tmp_path, "linux-aarch64", False, kernel_log=True).commands(tmp_path)
    assert "-DCMAKE_C_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5" in configure


def _fake_tree(root, name="executorch"):
    tree = root / name
    for sub in (
        "backends/xnnpack/third-party/XNNPACK",
        "backends/xnnpack/third-party/cpuinfo",
        "backends/xnnpack/third-party/pthreadpool",
        "third-party/flatbuffers",
        "third-party/flatcc",
    ):
        (tree / sub).mkdir(parents=True)
        (tree / sub / "CMakeLists.txt").write_text("")
    (tree / "CMakeLists.txt").write_text("")
    return tree


def test_missing_checkout_and_ndk_are_clear_errors(tmp_path):
    with pytest.raises(RunnerError, match="needs an ExecuTorch source tree") as info:
        source.check_inputs(None, "android-arm64-v8a", None)
    assert "EXECUTORCH_REPO" in info.value.hint and "docs/targets.md" in info.value.hint
    with pytest.raises(RunnerError, match="is not an ExecuTorch source tree"):
        source.check_inputs(str(tmp_path), "macos-arm64", None)
    fake = _fake_tree(tmp_path)
    (fake / "backends/xnnpack/third-party/XNNPACK/CMakeLists.txt").unlink()
    (fake / "third-party/flatcc/CMakeLists.txt").unlink()
    with pytest.raises(RunnerError, match="has no XNNPACK, flatcc submodules") as info:
        source.check_inputs(str(fake), "macos-arm64", None)
    assert "submodule update --init --recursive" in info.value.hint
    (fake / "backends/xnnpack/third-party/XNNPACK/CMakeLists.txt").write_text("")
    (fake / "third-party/flatcc/CMakeLists.txt").write_text("")
    assert source.check_inputs(str(fake), "macos-arm64", None) == (fake, None)
    with pytest.raises(RunnerError, match="must be in a folder named exactly 'executorch'"):
        source.check_inputs(str(_fake_tree(tmp_path, "et-src")), "linux-aarch64", None)
    with pytest.raises(RunnerError, match="needs the Android NDK") as info:
        source.check_inputs(str(fake), "android-arm64-v8a", None)
    assert "ANDROID_NDK" in info.value.hint
    with pytest.raises(RunnerError, match="is not an Android NDK"):
        source.check_inputs(str(fake), "android-arm64-v8a", str(tmp_path))


def test_source_device_without_checkout_fails_at_build_with_the_hint(home, monkeypatch):
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    dev = inventory.Device("mac", "ssh", "macos-arm64", recipe="source", props={"host": "mac.local"})
    with pytest.raises(RunnerError, match="needs an ExecuTorch source tree"):
        recipes.toolchain_for(dev, home, sme2=False)
