"""Device registry, SME2 capability checks, pinning and condition parsing (pure functions on
samples from real devices), and the local measurement lock."""

import multiprocessing
import textwrap

import pytest

from kit.core.errors import Sme2Error, TargetError
from kit.core.names import Target
from kit.devices import conditions, inventory
from kit.devices.transports.base import fastest_core

DIMENSITY_9500_CPUINFO = textwrap.dedent(
    """
    processor	: 0
    BogoMIPS	: 26.00
    Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm sb paca pacg dcpodp sve2 sveaes svepmull svebitperm svesha3 svesm4 flagm2 frint svei8mm svebf16 i8mm bf16 dgh bti ecv afp wfxt sme sme2 smei16i64 smef64f64 smei8i32 smef16f32 smeb16f32 smef32f32 sme2p1
    CPU implementer	: 0x41
    CPU architecture: 8
    CPU variant	: 0x0
    CPU part	: 0xd85
    CPU revision	: 1

    processor	: 1
    Features	: fp asimd sve2 sme sme2
    CPU part	: 0xd87
    """
)
X86_CPUINFO = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n"


def test_cpuinfo_parsing_finds_sme2_on_arm_and_not_on_x86():
    arm = conditions.parse_cpuinfo(DIMENSITY_9500_CPUINFO)
    assert arm["cores"] == 2 and conditions.has_sme2(arm) and "0xd85" in arm["cpu_model"]
    x86 = conditions.parse_cpuinfo(X86_CPUINFO)
    assert x86["cores"] == 2 and x86["cpu_model"] == "AMD EPYC" and not conditions.has_sme2(x86)


def test_hwcap2_and_sysctl_parsing():
    assert conditions.parse_hwcap2(0x7FFFBFF47FC77FFF) == {"sme": True, "sme2": True}  # QEMU -cpu max
    assert conditions.parse_hwcap2(0x1FFB81400477FFF) == {"sme": False, "sme2": False}  # -cpu max,sme=off
    assert conditions.parse_sysctl_sme2("hw.optional.arm.FEAT_SME2: 1\n")
    assert not conditions.parse_sysctl_sme2("hw.optional.arm.FEAT_SME2: 0\n")
    assert not conditions.parse_sysctl_sme2("sysctl: unknown oid 'hw.optional.arm.FEAT_SME2'")


def test_fastest_core_prefers_the_big_core():
    freqs = {0: "2000000", 1: "2000000", 2: "3630000", 3: "3630000"}
    read = lambda p: freqs.get(int(p.split("/cpu")[2].split("/")[0])) if "cpuinfo_max_freq" in p else None  # noqa: E731
    assert fastest_core(read, 4) == 3
    assert fastest_core(lambda p: None, 4) is None


def test_default_registry_has_host_and_the_emulated_pair(home):
    reg = inventory.load_registry(home)
    assert reg["host"].transport == "local" and not reg["host"].emulated
    qemu = reg["armv9-qemu"]
    assert qemu.emulated and qemu.platform == "linux-aarch64" and qemu.size == "small" and qemu.max_iterations == 10
    assert [t.key for t in qemu.targets()] == ["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"]


def test_user_file_overrides_and_adds(tmp_path, home):
    extra = tmp_path / "devices.toml"
    extra.write_text(
        '[device.host]\nthreads = [1, 2]\n\n[device.pixel]\ntransport = "adb"\nplatform = "android-arm64-v8a"\nrecipe = "source"\nserial = "ABC123"\n'
    )
    reg = inventory.load_registry(home, extra)
    assert reg["host"].threads == [1, 2] and reg["host"].transport == "local"
    assert reg["pixel"].props["serial"] == "ABC123" and reg["pixel"].size == "full"


@pytest.mark.parametrize(
    "body, message",
    [
        ('[device.x]\ntransport = "telnet"\n', "unknown transport"),
        ("[device.x]\nthreads = [0]\n", "threads must be"),
        ('[device.x]\ncolour = "red"\n', "unknown keys"),
        ("[device.Bad]\n", "invalid device name"),
        ("[device.x\n", "not valid TOML"),
        ('[device.x]\nport = "22"\n', "device 'x' in .*devices.toml: key 'port' = '22' is invalid"),
        ("[device.x]\nmax_iterations = 0\n", "key 'max_iterations' = 0 is invalid"),
        ("[device.x]\nenv = { A = 1 }\n", "env values must be strings"),
    ],
)
def test_bad_registry_entries_are_clear_errors(tmp_path, home, body, message):
    extra = tmp_path / "devices.toml"
    extra.write_text(body)
    with pytest.raises(Sme2Error, match=message):
        inventory.load_registry(home, extra)


class _Caps:
    def __init__(self, sme2):
        self.sme2 = sme2

    def detect_sme2(self):
        return self.sme2


def test_sme2_flag_is_checked_against_the_device(monkeypatch):
    monkeypatch.delenv("EXECUTORCH_REPO", raising=False)
    x86 = inventory.Device("host", "local", "linux-x86_64")
    inventory.check_sme2(x86, Target("host", False), _Caps(False))
    with pytest.raises(TargetError, match="has no SME2"):
        inventory.check_sme2(x86, Target("host", True), _Caps(False))
    board = inventory.Device("board", "ssh", "linux-aarch64")
    inventory.check_sme2(board, Target("board", True), _Caps(True))
    with pytest.raises(TargetError, match="cannot be switched off with the wheel runner") as info:
        inventory.check_sme2(board, Target("board", False), _Caps(True))
    assert "run `sme2 source fetch`" in info.value.hint and "EXECUTORCH_REPO=" in info.value.hint
    assert "docs/targets.md" in info.value.hint
    # With a source tree, SME2 off on SME2 hardware is a source build; SME2 on stays the wheel's.
    board.props["executorch_repo"] = "/src/executorch"
    assert inventory.check_sme2(board, Target("board", False), _Caps(True)).recipe == "source"
    assert inventory.check_sme2(board, Target("board", True), _Caps(True)).recipe == "wheel"


def test_unknown_device_lists_known_ones(home):
    with pytest.raises(TargetError, match="known devices: armv9-qemu, host"):
        inventory.resolve("phone.sme2-on", home)


def test_interleaving_alternates_on_and_off_per_thread_count():
    dev = inventory.Device("d", "qemu", "linux-aarch64", threads=[1, 2])
    on, off = (inventory.ResolvedTarget(Target("d", s), dev, None) for s in (True, False))
    blocks = inventory.interleave([off, on], None)
    assert [(r.target.sme2, t) for r, t in blocks] == [(True, 1), (False, 1), (True, 2), (False, 2)]


def _measure(args):
    home_path, target = args
    import warnings

    warnings.filterwarnings("ignore")
    from kit.core.home import DataRoot
    from kit.devices import inventory
    from kit.export import exporter
    from kit.models import registry
    from kit.profile import session
    from kit.runners import recipes
    from kit.runners.build import build_runner

    root = DataRoot.resolve(home_path)
    r = inventory.resolve(target, root)
    exp = exporter.export_variant(registry.get("tiny_seg"), "fp32", "small", root)
    binary = build_runner(root, recipes.toolchain_for(r.device, root, r.target.sme2))
    results = [
        session.run_session(root, exp, r, session.Measurement(threads=1, iterations=5, warmup=1, binary=binary))
        for _ in range(2)
    ]
    return [res.record.conditions["measurement_window"] for res in results]


@pytest.mark.slow  # and qemu: builds the aarch64 runner and measures under emulation, about a minute
def test_two_local_measurements_never_overlap(home, exports, native_runner, qemu_setup):
    """Host and emulated runs share this CPU: two processes measuring at once must take turns."""
    exports["fp32"]  # exported once here, found by both workers
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        windows = [
            w
            for ws in pool.map(_measure, [(str(home.path), "host.sme2-off"), (str(home.path), "armv9-qemu.sme2-on")])
            for w in ws
        ]
    windows.sort()
    assert len(windows) == 4
    for (s1, e1), (s2, e2) in zip(windows, windows[1:]):
        assert e1 <= s2, f"measurements overlap: {s1:.3f}-{e1:.3f} and {s2:.3f}-{e2:.3f}"
