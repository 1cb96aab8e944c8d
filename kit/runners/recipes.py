"""Runner recipes: which runner binary a target needs and how it is built.

`wheel` builds against the installed executorch package (this machine, Linux or macOS) or the
aarch64 package `sme2 setup` fetches (emulated and Linux aarch64 boards); `source` builds ExecuTorch
itself from a source tree (`EXECUTORCH_REPO`), the only way to a real SME2-off runner on SME2
hardware and to the kernel-log runner. Which recipe a target needs is decided when it is resolved
(kit.devices.inventory.recipe_for): SME2 off on SME2 hardware is always a source build."""

from __future__ import annotations

import shutil

from kit.core.errors import TargetError
from kit.core.home import DataRoot
from kit.core.platforms import HOST_PLATFORM
from kit.devices import toolsetup
from kit.devices.inventory import Device, ResolvedTarget
from kit.runners import build, source
from kit.runners.toolchains import SOURCE_DIR, Toolchain, host_toolchain

RECIPES = ("wheel", "source")


def toolchain_for(device: Device, root: DataRoot, sme2: bool, kernel_log: bool = False, recipe: str | None = None):
    """The toolchain of one runner: `recipe` overrides the device's (None: the device's)."""
    recipe = recipe or device.recipe
    if recipe == "source" or kernel_log:  # only a source build can print XNNPACK's kernel choices
        return source.toolchain(device, root, sme2, kernel_log)
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
        f"device {device.name!r}: the wheel recipe builds for {HOST_PLATFORM} and linux-aarch64, not {device.platform}",
        'set recipe = "source" (an ExecuTorch source tree) for Android and macOS devices; see docs/targets.md',
    )


def build_flags(device: Device, sme2: bool) -> tuple[str, ...]:
    """What besides the toolchain makes two wheel runners of one platform differ (none: the CPU
    picks SME2 at run time). Source runners carry their variant and ExecuTorch build instead."""
    return ()


def build_for(
    device: Device,
    root: DataRoot,
    sme2: bool,
    recipe: str | None = None,
    kernel_log: bool = False,
    progress=None,
) -> build.RunnerBinary:
    """Build (or reuse) one runner variant for a device. The kernel-log runner is built with SME2
    compiled in, like the wheel: the CPU decides (an emulated CPU without SME2 logs NEON kernels)."""
    tc = toolchain_for(device, root, True if kernel_log else sme2, kernel_log, recipe)
    if "source_build" in tc.extra:
        return build.build_runner(root, tc, recipe="source", flags=source.runner_flags(tc), progress=progress)
    return build.build_runner(root, tc, recipe="wheel", flags=build_flags(device, sme2), progress=progress)


def runner_for(
    resolved: ResolvedTarget, root: DataRoot, runner_kind: str, progress=None, kernel_log: bool = False
) -> build.RunnerBinary | None:
    """The native runner binary for a target (built once, cached), or None for pybind."""
    if runner_kind == "pybind":
        return None
    return build_for(resolved.device, root, resolved.target.sme2, resolved.recipe, kernel_log, progress)
