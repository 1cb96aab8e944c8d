"""The `local` transport: this machine."""

from __future__ import annotations

import glob
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kit.devices import conditions
from kit.devices.transports.base import Completed, Transport, run_local


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@dataclass
class LocalTransport(Transport):
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
        return _read(path)

    def describe(self) -> dict:
        return describe_linux(self.read_file, platform.machine())

    def detect_sme2(self) -> bool:
        return conditions.has_sme2(conditions.parse_cpuinfo(self.read_file("/proc/cpuinfo") or ""))


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
