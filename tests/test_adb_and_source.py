"""The adb transport and the source recipe, up to the device and toolchain boundary: no phone,
ExecuTorch checkout or NDK exists here, so argv, parsing and the errors are what is tested."""

import pytest

from kit.core.errors import RunnerError, Sme2Error, TargetError
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


# ---- Android: adb over the network, the NDK build, and its commands against the Linux ones


def test_adb_connect_for_a_phone_on_the_network(home):
    from kit.devices.transports.adb import network_serial, parse_connect

    dev = inventory.Device("x300", "adb", "android-arm64-v8a", recipe="source", props={"host": "192.168.1.20"})
    t = AdbTransport.from_device(dev, home)
    assert t.serial == "192.168.1.20:5555" and t.network == ("192.168.1.20", 5555)
    assert t.connect_argv() == ["adb", "connect", "192.168.1.20:5555"]  # one argv element, no shell
    assert network_serial("fe80::1", 5037) == "[fe80::1]:5037"
    assert parse_connect("connected to 192.168.1.20:5555\n") and parse_connect("already connected to h:5555")
    assert not parse_connect("failed to connect to '192.168.1.20:5555': Connection refused")
    assert not parse_connect("cannot connect to 192.168.1.20:5555: No route to host (113)")
    usb = AdbTransport.from_device(inventory.Device("p", "adb", "android-arm64-v8a", props={"serial": "R5CT"}), home)
    with pytest.raises(TargetError, match="not a network device"):
        usb.connect_argv()
    for bad in ({"host": "-oProxyCommand=x"}, {"host": "phone.lan", "port": 70000}, {"host": "a b"}):
        with pytest.raises(TargetError):
            AdbTransport.from_device(inventory.Device("p", "adb", "android-arm64-v8a", props=bad), home)


def test_adb_network_phone_in_devices_toml_is_validated(home, tmp_path):
    extra = tmp_path / "devices.toml"
    extra.write_text(
        '[device.x300]\ntransport = "adb"\nplatform = "android-arm64-v8a"\nhost = "x300.lan"\nport = 37099\n'
    )
    dev = inventory.load_registry(home, extra)["x300"]
    assert AdbTransport.from_device(dev, home).connect_argv() == ["adb", "connect", "x300.lan:37099"]
    extra.write_text('[device.x300]\ntransport = "adb"\nplatform = "android-arm64-v8a"\nhost = "x;reboot"\n')
    with pytest.raises(Sme2Error, match="key 'host'"):
        inventory.load_registry(home, extra)


def _fake_ndk(root):
    ndk = root / "android-ndk-r27c"
    (ndk / "build" / "cmake").mkdir(parents=True)
    (ndk / "build" / "cmake" / "android.toolchain.cmake").write_text("")
    bin_dir = ndk / "toolchains" / "llvm" / "prebuilt" / "linux-x86_64" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "clang++").write_text("")
    libdir = ndk / "toolchains/llvm/prebuilt/linux-x86_64/sysroot/usr/lib/aarch64-linux-android"
    libdir.mkdir(parents=True)
    (libdir / "libc++_shared.so").write_bytes(b"\x7fELF-arm64")
    return ndk


@pytest.mark.parametrize("sme2,kernel_log", [(True, False), (False, False), (True, True)])
def test_android_build_differs_from_linux_only_in_platform_lines(tmp_path, sme2, kernel_log):
    ndk = _fake_ndk(tmp_path)
    android = source.SourceBuild(tmp_path / "executorch", "android-arm64-v8a", sme2, kernel_log, ndk)
    linux = source.SourceBuild(tmp_path / "executorch", "linux-aarch64", sme2, kernel_log, machine="x86_64")
    a, b = android.executorch_args(), linux.executorch_args()
    platform_lines = {
        f"-DCMAKE_TOOLCHAIN_FILE={ndk}/build/cmake/android.toolchain.cmake",
        "-DANDROID_ABI=arm64-v8a",
        "-DANDROID_PLATFORM=android-24",
        "-DANDROID_STL=c++_shared",
    }
    flags = "-march=armv9-a" + (" -UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5" if kernel_log else "")
    assert set(a) - set(b) == platform_lines | {f"-DCMAKE_C_FLAGS={flags}", f"-DCMAKE_CXX_FLAGS={flags}"}
    linux_only = {f"-DCMAKE_TOOLCHAIN_FILE={source.SOURCE_DIR / 'aarch64-linux-gnu.cmake'}"}
    if kernel_log:
        linux_only |= {
            "-DCMAKE_C_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5",
            "-DCMAKE_CXX_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5",
        }
    assert set(b) - set(a) == linux_only
    # Every ExecuTorch/XNNPACK option is the same, in the same order.
    same = lambda args: [
        x for x in args if x.startswith(("-DEXECUTORCH", "-DXNNPACK", "-DBUILD_TESTING", "-DCMAKE_BUILD_TYPE"))
    ]  # noqa: E731
    assert same(a) == same(b) and f"-DXNNPACK_ENABLE_ARM_SME2={'ON' if sme2 else 'OFF'}" in same(a)
    assert "-DEXECUTORCH_BUILD_PYBIND=OFF" in same(a) and "-DEXECUTORCH_BUILD_EXTENSION_LLM=OFF" in same(a)
    # The runner gets the same toolchain lines, never the ExecuTorch options.
    assert set(android.runner_cmake_args()) == platform_lines
    assert linux.runner_cmake_args() == tuple(linux_only - {x for x in linux_only if "FLAGS" in x})


def test_android_toolchain_uses_the_ndk_and_ships_libcxx_shared(home, tmp_path, monkeypatch):
    ndk = _fake_ndk(tmp_path)
    tree = _fake_tree(tmp_path)
    monkeypatch.setenv("EXECUTORCH_REPO", str(tree))
    monkeypatch.setenv("ANDROID_NDK", str(ndk))
    monkeypatch.delenv("KLEIDIAI_SOURCE_DIR", raising=False)
    dev = inventory.Device("x300", "adb", "android-arm64-v8a", recipe="source", props={"serial": "10AD5F00RZ"})
    tc = recipes.toolchain_for(dev, home, sme2=False)
    assert tc.cxx.endswith("linux-x86_64/bin/clang++") and tc.platform == "android-arm64-v8a"
    assert "-DANDROID_STL=c++_shared" in tc.cmake_args
    folder = tc.extra["source_folder"]
    assert folder.parent == home.runners / "executorch-source" and folder.name.startswith("android-arm64-v8a-sme2-off-")
    assert ("sme2=off", "kernel_log=off") == source.runner_flags(tc)[:2]
    # Another variant, another cache key; the same one again, the same key.
    assert recipes.toolchain_for(dev, home, sme2=True).extra["source_folder"] != folder
    assert recipes.toolchain_for(dev, home, sme2=False).extra["source_folder"] == folder
    lib = tmp_path / "lib"
    lib.mkdir()
    source._copy_cxx_shared(tc.extra["source_build"], lib)
    assert (lib / "libc++_shared.so").read_bytes() == b"\x7fELF-arm64"
    from kit.devices.transports.remote import RUNNER_LIBS

    assert "libc++_shared.so" in RUNNER_LIBS  # pushed beside the runner on the phone


def test_source_tree_fingerprint_follows_its_files(tmp_path, monkeypatch):
    tree = _fake_tree(tmp_path)
    first = source.tree_fingerprint(tree)
    assert first == source.tree_fingerprint(tree) and first["files"] == 6
    monkeypatch.setattr(source, "FINGERPRINT_TTL_S", 0.0)  # look again at every call
    (tree / "third-party" / "flatcc" / "lib").mkdir()  # flatcc's build writes here: not the sources
    (tree / "third-party" / "flatcc" / "lib" / "libflatccrt.a").write_text("x")
    assert source.tree_fingerprint(tree) == first
    (tree / "backends" / "xnnpack" / "third-party" / "XNNPACK" / "CMakeLists.txt").write_text("changed")
    assert source.tree_fingerprint(tree) != first


def test_gcc12_gets_the_loop_vectorizer_workaround_for_c_only(tmp_path):
    """Debian 12's aarch64 gcc 12.2 crashes (ICE in vect_transform_reduction) on a KleidiAI file."""
    gcc12 = "/usr/bin/aarch64-linux-gnu-gcc: aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0"
    assert source.compiler_workarounds(gcc12) == ("-fno-tree-loop-vectorize",)
    assert source.compiler_workarounds("/usr/bin/gcc: gcc (Debian 14.2.0-19) 14.2.0") == ()
    assert source.compiler_workarounds("/usr/bin/clang: Debian clang version 12.0.1") == ()
    spec = source.SourceBuild(tmp_path, "linux-aarch64", True, True, c_workarounds=("-fno-tree-loop-vectorize",))
    args = spec.executorch_args()
    assert "-DCMAKE_C_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5 -fno-tree-loop-vectorize" in args
    assert "-DCMAKE_CXX_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5" in args
