"""Platform names: how this machine and a device are named in runner caches, targets and runs.

`linux-x86_64`, `linux-aarch64`, `macos-arm64`, `android-arm64-v8a`. A Mac reports `arm64` from
uname like a Linux aarch64 machine does, so the operating system decides, never the machine alone."""

from __future__ import annotations

import platform as _platform

PLATFORMS = ("linux-x86_64", "linux-aarch64", "macos-arm64", "android-arm64-v8a")


def platform_of(system: str, machine: str) -> str:
    """The platform name from `uname -s` and `uname -m` (or Python's platform.system/machine)."""
    system, machine = system.strip().lower(), machine.strip().lower()
    if system == "darwin":
        return "macos-arm64" if machine in ("arm64", "aarch64") else f"macos-{machine}"
    if machine in ("aarch64", "arm64"):
        return "linux-aarch64"
    return f"linux-{machine}"


HOST_PLATFORM = platform_of(_platform.system(), _platform.machine())
