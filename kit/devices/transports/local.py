"""The `local` transport: this machine, Linux or macOS.

What the machine is comes from `uname -s` / `uname -m`, a file reader (/proc/cpuinfo, sysfs) and a
command reader (`sysctl` on macOS): the transport holds all four as a `Host`, so tests feed a
Mac's recorded outputs through exactly the code a Mac runs."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from kit.core.platforms import platform_of
from kit.devices import conditions
from kit.devices.transports.base import Completed, Transport, run_local


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _command(argv: list[str]) -> str | None:
    """stdout of a short query command (`sysctl ...`), or None when it is missing or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 or done.stdout else None


@dataclass(frozen=True)
class Host:
    """How to look at a machine: its `uname -s` and `uname -m`, and readers for files and commands."""

    system: str
    machine: str
    read: Callable[[str], str | None] = _read
    command: Callable[[list[str]], str | None] = _command

    @classmethod
    def this_machine(cls) -> "Host":
        return cls(platform.system(), platform.machine())

    @property
    def platform(self) -> str:
        return platform_of(self.system, self.machine)

    @property
    def macos(self) -> bool:
        return self.system.strip().lower() == "darwin"

    def describe(self) -> dict:
        return describe_macos(self.command, self.machine) if self.macos else describe_linux(self.read, self.machine)

    def detect_sme2(self) -> bool:
        if self.macos:
            return conditions.parse_sysctl_sme2(self.command(["sysctl", "hw.optional.arm.FEAT_SME2"]) or "")
        return conditions.has_sme2(conditions.parse_cpuinfo(self.read("/proc/cpuinfo") or ""))

    def core_count(self) -> int:
        if self.macos:
            info = conditions.parse_sysctl(self.command(["sysctl", "hw.ncpu"]) or "")
            return int(info.get("hw.ncpu", "0") or 0) or 1
        return conditions.parse_cpuinfo(self.read("/proc/cpuinfo") or "")["cores"] or 1


@dataclass
class LocalTransport(Transport):
    host: Host = field(default_factory=Host.this_machine)

    def workdir(self, name: str) -> str:
        return tempfile.mkdtemp(prefix=f"sme2-{name}-")

    def push(self, local: Path, remote: str) -> None:
        if Path(local).resolve() != Path(remote).resolve():
            shutil.copy2(local, remote)

    def pull(self, remote: str, local: Path) -> None:
        if Path(local).resolve() != Path(remote).resolve():
            shutil.copy2(remote, local)

    def run(self, argv: list[str], timeout: float, env: dict | None = None, cpus: str | None = None) -> Completed:
        full_env = {**os.environ, **(env or {})}
        return run_local(pin(argv, cpus), timeout, env=full_env)

    def cleanup(self, remote_dir: str) -> None:
        shutil.rmtree(remote_dir, ignore_errors=True)

    def read_file(self, path: str) -> str | None:
        return self.host.read(path)

    def describe(self) -> dict:
        return self.host.describe()

    def detect_sme2(self) -> bool:
        return self.host.detect_sme2()

    def core_count(self) -> int:
        return self.host.core_count()

    @property
    def pinnable(self) -> bool:
        """macOS has no CPU affinity a runner can be given (no taskset): runs are never pinned."""
        return not self.host.macos


# sysctl names read on macOS besides the hw.optional.arm family (missing ones are skipped).
MACOS_SYSCTLS = (
    "machdep.cpu.brand_string",
    "hw.model",
    "hw.ncpu",
    "hw.perflevel0.logicalcpu",
    "hw.perflevel1.logicalcpu",
    "kern.osproductversion",
)


def describe_macos(command, machine: str) -> dict:
    """Conditions of a Mac through a `command(argv) -> stdout | None` function: CPU, cores (and
    performance/efficiency split), macOS version, and the whole `hw.optional.arm` feature family."""
    info = conditions.parse_sysctl(command(["sysctl", *MACOS_SYSCTLS]) or "")
    features = conditions.arm_features(conditions.parse_sysctl(command(["sysctl", "hw.optional.arm"]) or ""))

    def number(key: str) -> int | None:
        value = info.get(key, "")
        return int(value) if value.isdigit() else None

    return {
        "machine": machine,
        "os": "macOS " + info["kern.osproductversion"] if info.get("kern.osproductversion") else "macOS",
        "cpu_model": info.get("machdep.cpu.brand_string", ""),
        "hw_model": info.get("hw.model"),
        "cores": number("hw.ncpu") or 0,
        "performance_cores": number("hw.perflevel0.logicalcpu"),
        "efficiency_cores": number("hw.perflevel1.logicalcpu"),
        "sme2_detected": features.get("FEAT_SME2") == 1,
        "hw_optional_arm": features or None,
        "governor": None,
        "cur_freq_khz": None,
        "thermal_c": None,
    }


def pin(argv: list[str], cpus: str | None) -> list[str]:
    """Prefix `taskset -c CPUS` when pinning is asked for and taskset exists."""
    if cpus is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", cpus, *argv]


def describe_linux(read, machine: str) -> dict:
    """Conditions of a Linux device through a `read(path) -> text | None` function."""
    info = conditions.parse_cpuinfo(read("/proc/cpuinfo") or "")
    freqs, governors = {}, set()
    for cpu in range(info["cores"] or os.cpu_count() or 1):
        base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
        cur = conditions.parse_khz(read(f"{base}/scaling_cur_freq"))
        if cur:
            freqs[cpu] = cur
        gov = read(f"{base}/scaling_governor")
        if gov:
            governors.add(gov.strip())
    zones = []
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*"))[:16] if read is _read else []:
        kind, temp = read(f"{zone}/type"), read(f"{zone}/temp")
        if kind and temp:
            zones.append((kind, temp))
    return {
        "machine": machine,
        "cpu_model": info["cpu_model"],
        "cores": info["cores"],
        "sme2_detected": conditions.has_sme2(info),
        "governor": ",".join(sorted(governors)) or None,
        "cur_freq_khz": freqs or None,
        "thermal_c": conditions.parse_thermal(zones) or None,
    }
