"""The `adb` transport: Android phones over `adb -s SERIAL push/shell/pull`, by USB or, for a
phone on the network (`host` and `port` in its device entry), after `adb connect host:port`.

While measuring it applies the settings Arm's kit applies (screen stays awake, animations off) and
restores the previous values afterwards; `threads=1` pins with `taskset <hexmask>` (toybox).
No phone exists in CI: argv building and output parsing are unit-tested on samples; the manual
check is in docs/targets.md."""

from __future__ import annotations

import contextlib
import shutil
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from kit.core import names
from kit.core.errors import NameError_, TargetError
from kit.devices import conditions, logcat, simpleperf
from kit.devices.transports.base import Completed, run_local
from kit.devices.transports.local import describe_linux
from kit.devices.transports.remote import RemoteTransport, quote

ANIMATION_SETTINGS = ("window_animation_scale", "transition_animation_scale", "animator_duration_scale")
LOST_MARKERS = (
    "device offline",
    "no devices/emulators found",
    "not found",
    "device unauthorized",
    "error: closed",
    "protocol fault",
    "connection reset",
)


def parse_devices(text: str) -> dict[str, str]:
    """`adb devices` output to {serial: state} (state: device, offline, unauthorized, ...)."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*")):
            continue
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


def cpu_mask(cpus: str) -> str:
    """A CPU list ("3", "4-7", "0,2") as the hex mask toybox taskset takes ("8", "f0", "5")."""
    mask = 0
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        for c in range(int(lo), int(hi or lo) + 1):
            mask |= 1 << c
    return format(mask, "x")


def network_serial(host: str, port: int) -> str:
    """The serial adb gives a phone reached over the network: 'host:port' ('[v6]:port' for IPv6)."""
    host, port = names.host_name(host), names.port_number(port)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_connect(text: str) -> bool:
    """`adb connect` prints 'connected to H:P' or 'already connected to H:P' and exits 0 even when it
    fails ('failed to connect to ...', 'cannot connect to ...')."""
    text = text.strip().lower()
    return text.startswith(("connected to", "already connected to"))


@dataclass
class AdbTransport(RemoteTransport):
    serial: str = ""
    adb: str = "adb"
    saved_settings: dict = field(default_factory=dict)
    network: tuple[str, int] | None = None  # (host, port): `adb connect` before use
    simpleperf_data: str | None = None  # set by simpleperf(): runs are recorded into this file

    def __post_init__(self):
        super().__post_init__()
        # The serial is the value of `adb -s`; checked (as at devices.toml load) so it can never
        # be an option or carry shell syntax. The remote folder reaches the device's shell.
        try:
            names.adb_serial(self.serial)
            names.remote_path(self.remote_dir)
        except NameError_ as e:
            raise TargetError(f"adb device {self.device!r}: {e.message}", e.hint) from e

    @classmethod
    def from_device(cls, device, root) -> "AdbTransport":
        serial, network = device.props.get("serial"), None
        if device.props.get("host"):  # a phone on the network (wireless debugging / adb tcpip)
            port = device.props.get("port", 5555)
            try:
                network = (names.host_name(device.props["host"]), names.port_number(port))
            except NameError_ as e:
                raise TargetError(f"adb device {device.name!r}: {e.message}", e.hint) from e
            serial = serial or network_serial(*network)
        if not serial:
            raise TargetError(
                f"adb device {device.name!r} has no serial",
                f'set serial = "..." (from `adb devices`), or host = "..." and port = ... for a phone on the '
                f"network, for it in {root.user_devices}",
            )
        return cls(
            device.name,
            options={"affinity": device.affinity},
            remote_dir=device.props.get("remote_dir", "/data/local/tmp/sme2"),
            serial=str(serial),
            network=network,
        )

    def connect_argv(self) -> list[str]:
        """`adb connect host:port`, as one validated argv element (never a shell string)."""
        if self.network is None:
            raise TargetError(f"adb device {self.device!r} is not a network device", "set host and port for it")
        return [self.adb, "connect", network_serial(*self.network)]

    def connect(self) -> None:
        done = run_local(self.connect_argv(), 60)
        if done.timed_out or done.returncode != 0 or not parse_connect(done.stdout + done.stderr):
            raise TargetError(
                f"adb could not connect to phone {self.device!r} at {network_serial(*self.network)}: "
                f"{(done.stdout + done.stderr).strip()[-200:] or 'no answer'}",
                "enable wireless debugging (or `adb tcpip 5555` over USB), check the address and that this "
                "machine may reach it",
            )

    def adb_argv(self, *args: str) -> list[str]:
        return [self.adb, "-s", self.serial, *args]

    def shell_argv(self, argv: list[str]) -> list[str]:
        return self.adb_argv("shell", quote(argv))

    def shell(self, argv: list[str], timeout: float = 60.0) -> Completed:
        return run_local(self.shell_argv(argv), timeout)

    def copy_to(self, local: Path, remote: str) -> Completed:
        # Absolute local paths: a relative one starting with "-" would be an adb push option.
        return run_local(self.adb_argv("push", str(Path(local).absolute()), remote), 600)

    def copy_from(self, remote: str, local: Path) -> Completed:
        return run_local(self.adb_argv("pull", remote, str(Path(local).absolute())), 600)

    def lost(self, done: Completed) -> bool:
        text = (done.stderr or "").lower()
        return done.returncode not in (0, None) and any(m in text for m in LOST_MARKERS)

    def pin_argv(self, cpus: str) -> list[str]:
        return ["taskset", cpu_mask(cpus)]

    def run(self, argv: list[str], timeout: float, env: dict | None = None, cpus: str | None = None) -> Completed:
        """Run the program with the phone's log cleared before and the runner's own logcat lines
        (XNNPACK's kernel log lives there on Android) appended to its stderr after."""
        run_local(logcat.clear_argv(self.adb_argv()), 30)
        remote = [*logcat.PID_WRAPPER, *self.remote_argv(argv, env, cpus)]
        if self.simpleperf_data:
            remote = [*simpleperf.record_prefix(self.simpleperf_data), *remote]
        done = self.shell(remote, timeout=timeout)
        if self.lost(done):
            self._check(done, "running the program")
        pid, done.stderr = logcat.split_pid(done.stderr)
        if pid is not None:
            log = run_local(logcat.read_argv(self.adb_argv(), pid), 60)
            done.stderr = logcat.with_logcat(done.stderr, logcat.runner_lines(log.stdout, pid))
        return done

    @contextlib.contextmanager
    def simpleperf(self, local_dir: Path):
        """This transport with its runs recorded by the phone's simpleperf; on leaving, the profile
        is reported on the phone (text and protobuf) and perf.data, samples.txt and perf.trace are
        copied into `local_dir`. The phone's copies are removed either way."""
        remote = f"{self.remote_dir}/simpleperf-{secrets.token_hex(4)}"
        self._check(self.shell(["mkdir", "-p", remote]), "creating the simpleperf folder")
        data = f"{remote}/{simpleperf.DATA}"
        try:
            yield replace(self, simpleperf_data=data)
            for argv in simpleperf.report_argvs(data, remote):
                self._check(self.shell(argv, timeout=600), "reporting the simpleperf samples")
            Path(local_dir).mkdir(parents=True, exist_ok=True)
            for name in simpleperf.FILES:
                self.pull(f"{remote}/{name}", Path(local_dir) / name)
        finally:
            self.shell(["rm", "-rf", remote], timeout=60)

    def prepare(self) -> None:
        if shutil.which(self.adb) is None:
            raise TargetError("adb is not installed", "install Android platform-tools and put adb on PATH")
        listed = parse_devices(run_local([self.adb, "devices"], 30).stdout)
        state = listed.get(self.serial)
        if state != "device" and self.network is not None:
            self.connect()
            state = parse_devices(run_local([self.adb, "devices"], 30).stdout).get(self.serial)
        if state != "device":
            raise TargetError(
                f"phone {self.serial} ({self.device}) is {state or 'not connected'}",
                "connect it, enable USB debugging and accept the prompt; `adb devices` must list it as 'device'",
            )
        super().prepare()

    @contextlib.contextmanager
    def measurement(self):
        """Screen awake and animations off while measuring; previous values restored after."""
        self.saved_settings = {
            k: (self.shell(["settings", "get", "global", k]).stdout.strip() or "1") for k in ANIMATION_SETTINGS
        }
        for argv in settings_argvs(0):
            self.shell(argv)
        self.shell(["svc", "power", "stayon", "true"])
        try:
            yield
        finally:
            for k, v in self.saved_settings.items():
                self.shell(["settings", "put", "global", k, v if v != "null" else "1"])
            self.shell(["svc", "power", "stayon", "false"])

    def describe(self) -> dict:
        props = conditions.parse_getprop(self.shell(["getprop"]).stdout)
        info = describe_linux(self.read_file, "aarch64")
        return {
            **info,
            "serial": self.serial,
            "model": props.get("ro.product.model"),
            "soc": props.get("ro.soc.model") or props.get("ro.board.platform"),
            "android": props.get("ro.build.version.release"),
        }

    def detect_sme2(self) -> bool:
        return conditions.has_sme2(conditions.parse_cpuinfo(self.read_file("/proc/cpuinfo") or ""))


def settings_argvs(scale: int) -> list[list[str]]:
    return [["settings", "put", "global", k, str(scale)] for k in ANIMATION_SETTINGS]
