"""Runner recipes: which runner binary a target needs and how it is built.

`wheel` builds against the installed executorch package (host) or the aarch64 package `sme2 setup`
fetches (emulated and Linux aarch64 boards); `source` builds ExecuTorch itself from a checkout
(`EXECUTORCH_REPO`), the only way to a real SME2-off runner on SME2 hardware."""

from __future__ import annotations

import shutil

from kit.core.errors import TargetError
from kit.core.home import DataRoot
from kit.core.platforms import HOST_PLATFORM
from kit.devices import toolsetup
from kit.devices.inventory import Device, ResolvedTarget
from kit.runners import build, source
from kit.runners.toolchains import SOURCE_DIR, Toolchain, host_toolchain


def toolchain_for(device: Device, root: DataRoot, sme2: bool):
    if device.recipe == "source":
        return source.toolchain(device, root, sme2)
    if device.platform == HOST_PLATFORM:
        return host_toolchain()
    if device.platform == "linux-aarch64":
        et_root = toolsetup.aarch64_executorch_root(root)
        if not (et_root / "share" / "cmake" / "executorch-config.cmake").exists():
            raise TargetError(
                f"the aarch64 executorch package is not set up (needed to build the runner for {device.name})",
                "run: sme2 setup",
            )
        cxx = shutil.which(toolsetup.CROSS_CXX)
        if not cxx:
            raise TargetError(
                f"the aarch64 cross compiler {toolsetup.CROSS_CXX} is not installed",
                "as root: apt-get install g++-aarch64-linux-gnu, or run: sme2 setup",
            )
        return Toolchain(
            platform="linux-aarch64",
            executorch_root=et_root,
            cxx=cxx,
            cmake_args=(f"-DCMAKE_TOOLCHAIN_FILE={SOURCE_DIR / 'aarch64-linux-gnu.cmake'}",),
        )
    raise TargetError(
        f"device {device.name!r}: the wheel recipe builds for linux-x86_64 and linux-aarch64, not {device.platform}",
        'set recipe = "source" (an ExecuTorch checkout) for Android and macOS devices',
    )


def build_flags(device: Device, sme2: bool) -> tuple[str, ...]:
    """What besides the toolchain makes two runners of one platform differ (part of the cache key)."""
    if device.recipe == "source":
        return (f"sme2={'on' if sme2 else 'off'}",)
    return ()


def runner_for(resolved: ResolvedTarget, root: DataRoot, runner_kind: str, progress=None) -> build.RunnerBinary | None:
    """The native runner binary for a target's platform (built once, cached), or None for pybind."""
    if runner_kind == "pybind":
        return None
    sme2 = resolved.target.sme2
    return build.build_runner(
        root,
        toolchain_for(resolved.device, root, sme2),
        recipe=resolved.device.recipe,
        flags=build_flags(resolved.device, sme2),
        progress=progress,
    )
