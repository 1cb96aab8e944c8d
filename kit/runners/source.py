"""The `source` recipe: a runner built from an ExecuTorch source checkout, for Android, macOS and
Linux devices that need SME2 *off* on real SME2 hardware (XNNPACK has no run-time switch).

The configure/build commands come from one table (platform x SME2 x kernel-log) and are unit-
tested. No ExecuTorch checkout or Android NDK can be obtained in CI: a missing one is a clear error
naming what to install. Mirrors Arm's kit presets mac-arm64 / mac-arm64-sme2-off /
android-arm64-v9a / android-arm64-v9a-sme2-off, with the event tracer and devtools on."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic, lifetime
from kit.core.errors import RunnerError
from kit.core.locks import file_lock
from kit.runners.toolchains import SOURCE_DIR, Toolchain, find_tool

COMMON = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DEXECUTORCH_BUILD_XNNPACK=ON",
    "-DEXECUTORCH_BUILD_DEVTOOLS=ON",
    "-DEXECUTORCH_ENABLE_EVENT_TRACER=ON",
    "-DEXECUTORCH_BUILD_EXTENSION_MODULE=ON",
    "-DEXECUTORCH_BUILD_EXTENSION_DATA_LOADER=ON",
    "-DEXECUTORCH_BUILD_EXTENSION_FLAT_TENSOR=ON",
    "-DEXECUTORCH_BUILD_EXTENSION_NAMED_DATA_MAP=ON",
    "-DEXECUTORCH_BUILD_EXTENSION_TENSOR=ON",
    "-DEXECUTORCH_BUILD_KERNELS_OPTIMIZED=ON",
    "-DEXECUTORCH_BUILD_KERNELS_QUANTIZED=ON",
    "-DEXECUTORCH_ENABLE_LOGGING=ON",
)
SME2 = {
    True: ("-DXNNPACK_ENABLE_ARM_SME2=ON", "-DXNNPACK_ENABLE_ARM_SME=ON"),
    False: ("-DXNNPACK_ENABLE_ARM_SME2=OFF", "-DXNNPACK_ENABLE_ARM_SME=OFF"),
}
# The kernel-log variant makes XNNPACK print "Using ... microkernel '<name>'" for every operator.
KERNEL_LOG = (
    "-DCMAKE_C_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5",
    "-DCMAKE_CXX_FLAGS=-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5",
)
PLATFORM_ARGS = {
    "android-arm64-v8a": lambda ndk: (
        f"-DCMAKE_TOOLCHAIN_FILE={ndk}/build/cmake/android.toolchain.cmake",
        "-DANDROID_ABI=arm64-v8a",
        "-DANDROID_PLATFORM=android-28",
    ),
    "macos-arm64": lambda ndk: ("-DCMAKE_OSX_ARCHITECTURES=arm64",),
    "linux-aarch64": lambda ndk: (
        (f"-DCMAKE_TOOLCHAIN_FILE={SOURCE_DIR / 'aarch64-linux-gnu.cmake'}",) if os.uname().machine != "aarch64" else ()
    ),
}


@dataclass(frozen=True)
class SourceBuild:
    """Everything that determines one source build of ExecuTorch + the runner."""

    repo: Path
    platform: str
    sme2: bool
    kernel_log: bool = False
    ndk: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.platform}-sme2-{'on' if self.sme2 else 'off'}{'-xnnlog' if self.kernel_log else ''}"

    def executorch_args(self, install_prefix: Path) -> list[str]:
        if self.platform not in PLATFORM_ARGS:
            raise RunnerError(
                f"the source recipe does not know platform {self.platform!r}", f"use one of {', '.join(PLATFORM_ARGS)}"
            )
        return [
            *COMMON,
            *SME2[self.sme2],
            *(KERNEL_LOG if self.kernel_log else ()),
            *PLATFORM_ARGS[self.platform](self.ndk),
            f"-DCMAKE_INSTALL_PREFIX={install_prefix}",
        ]

    def commands(self, build_dir: Path, cmake: str = "cmake", jobs: int = 2) -> list[list[str]]:
        """Configure and install ExecuTorch; the runner is then built against the install prefix."""
        et_build, prefix = build_dir / "executorch", build_dir / "install"
        return [
            [cmake, "-S", str(self.repo), "-B", str(et_build), "-G", "Ninja", *self.executorch_args(prefix)],
            [cmake, "--build", str(et_build), "--target", "install", "--parallel", str(jobs)],
        ]

    def runner_cmake_args(self) -> tuple[str, ...]:
        args = tuple(
            a for a in PLATFORM_ARGS[self.platform](self.ndk) if "TOOLCHAIN" in a or "ANDROID" in a or "OSX" in a
        )
        return args


def check_inputs(repo: str | None, platform: str, ndk: str | None) -> tuple[Path, Path | None]:
    """A clear error for a missing checkout or NDK, naming what to install."""
    if not repo:
        raise RunnerError(
            f"the source recipe for {platform} needs an ExecuTorch checkout",
            "git clone --recursive https://github.com/pytorch/executorch and set EXECUTORCH_REPO (or executorch_repo in the device entry)",
        )
    repo_path = Path(repo).expanduser()
    if not (repo_path / "CMakeLists.txt").exists() or not (repo_path / "backends" / "xnnpack").is_dir():
        raise RunnerError(
            f"{repo_path} is not an ExecuTorch source checkout (no CMakeLists.txt or backends/xnnpack)",
            "point EXECUTORCH_REPO at a `git clone --recursive` of pytorch/executorch (v1.5.1 to match the wheel)",
        )
    if not (repo_path / "backends" / "xnnpack" / "third-party" / "XNNPACK" / "CMakeLists.txt").exists():
        raise RunnerError(
            f"the ExecuTorch checkout {repo_path} has no XNNPACK submodule",
            "run: git -C <checkout> submodule update --init --recursive",
        )
    ndk_path = None
    if platform.startswith("android"):
        if not ndk:
            raise RunnerError(
                "building for Android needs the Android NDK",
                "install NDK r27 or newer and set ANDROID_NDK (or android_ndk in the device entry)",
            )
        ndk_path = Path(ndk).expanduser()
        if not (ndk_path / "build" / "cmake" / "android.toolchain.cmake").exists():
            raise RunnerError(
                f"{ndk_path} is not an Android NDK (no build/cmake/android.toolchain.cmake)",
                "set ANDROID_NDK to the NDK's root folder",
            )
    return repo_path, ndk_path


def toolchain(device, root, sme2: bool, kernel_log: bool = False) -> Toolchain:
    repo, ndk = check_inputs(
        device.props.get("executorch_repo") or os.environ.get("EXECUTORCH_REPO"),
        device.platform,
        device.props.get("android_ndk") or os.environ.get("ANDROID_NDK"),
    )
    spec = SourceBuild(repo, device.platform, sme2, kernel_log, ndk)
    prefix = root.runners / "executorch-source" / spec.name / "install"
    cxx = (
        "clang++"
        if device.platform == "macos-arm64"
        else (
            "aarch64-linux-gnu-g++" if device.platform == "linux-aarch64" and os.uname().machine != "aarch64" else "c++"
        )
    )
    if ndk:
        cxx = str(next((ndk / "toolchains" / "llvm" / "prebuilt").glob("*/bin/clang++"), "clang++"))
    return Toolchain(
        platform=device.platform,
        executorch_root=prefix,
        cxx=cxx,
        cmake_args=spec.runner_cmake_args(),
        extra={"source_build": spec},
    )


def ensure_executorch(spec: SourceBuild, root, progress=None) -> Path:
    """Configure, build and install ExecuTorch from source once per (checkout commit, flags)."""
    folder = root.runners / "executorch-source" / spec.name
    commit = (
        subprocess.run(
            ["git", "-C", str(spec.repo), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    stamp = folder / "build.json"
    with file_lock(root.runners / f".source-{spec.name}.lock"):
        if stamp.exists() and atomic.json.loads(stamp.read_text()).get("commit") == commit:
            return folder / "install"
        cmake = find_tool("cmake")
        for argv in spec.commands(folder, cmake):
            if progress:
                progress(f"executorch source build ({spec.name}): {argv[1]}")
            proc = subprocess.run(argv, capture_output=True, text=True, preexec_fn=lifetime.die_with_parent())
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
                step = "configure" if argv[1] == "-S" else "build"
                log = root.logs / f"executorch-source-{spec.name}-{step}.log"
                atomic.write_text(log, f"$ {' '.join(map(str, argv))}\n{proc.stdout}{proc.stderr}")
                raise RunnerError(
                    f"ExecuTorch source build failed ({spec.name}):\n{tail}",
                    f"check the checkout's submodules and the toolchain (the commands come from "
                    f"kit/runners/source.py); full log: {log}",
                )
        atomic.write_json(stamp, {"commit": commit, "args": spec.executorch_args(folder / "install")})
    return folder / "install"
