"""Toolchains: how to compile the runner for one platform against one executorch package, and
where the build tools come from (cmake and ninja from their pip packages)."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kit.core.errors import RunnerError
from kit.core.platforms import HOST_PLATFORM

SOURCE_DIR = Path(__file__).resolve().parent  # the C++ runner's sources and CMake files


@dataclass(frozen=True)
class Toolchain:
    """How to compile for one platform against one executorch package."""

    platform: str
    executorch_root: Path  # folder holding share/cmake/executorch-config.cmake
    cmake_args: tuple[str, ...] = ()
    cxx: str = ""  # compiler for the platform
    extra: dict = field(default_factory=dict, hash=False, compare=False)


# The wheel recipe on a Mac links the executorch macOS wheel's .dylibs: arm64 (the architecture of
# Arm's kit mac-arm64 preset and ExecuTorch's own macOS presets) and the wheel's minimum macOS
# (its tag macosx_14_0_arm64; every .dylib in it says minos 14.0), so the linker never builds for an
# older system than the libraries it links (tests/test_macos_host.py reads both from the wheel).
MACOS_WHEEL_DEPLOYMENT_TARGET = "14.0"
MACOS_CMAKE_ARGS = ("-DCMAKE_OSX_ARCHITECTURES=arm64", f"-DCMAKE_OSX_DEPLOYMENT_TARGET={MACOS_WHEEL_DEPLOYMENT_TARGET}")


def host_cmake_args(platform: str = HOST_PLATFORM) -> tuple[str, ...]:
    return MACOS_CMAKE_ARGS if platform == "macos-arm64" else ()


def host_toolchain() -> Toolchain:
    import executorch  # heavy: only when building

    root = Path(list(executorch.__path__)[0])
    default_cxx = "clang++" if HOST_PLATFORM.startswith("macos") else "c++"  # Apple clang (Xcode's tools)
    return Toolchain(
        platform=HOST_PLATFORM,
        executorch_root=root,
        cxx=os.environ.get("CXX", default_cxx),
        cmake_args=host_cmake_args(),
    )


def find_tool(name: str) -> str:
    """cmake and ninja from their pip packages (CMake >= 3.28 is required; Debian 12 has 3.25)."""
    with contextlib.suppress(ImportError):
        mod = __import__(name)
        d = getattr(mod, "CMAKE_BIN_DIR" if name == "cmake" else "BIN_DIR", None)
        if d and (Path(d) / name).exists():
            return str(Path(d) / name)
    found = shutil.which(name)
    if not found:
        raise RunnerError(f"{name} is not installed", f"pip install {name} (the project's dependencies include it)")
    return found
