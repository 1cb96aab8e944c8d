"""The `source` recipe: ExecuTorch built from a source tree (`EXECUTORCH_REPO`), then the runner
built against that install. It is the only way to a real SME2-*off* runner on SME2 hardware
(XNNPACK has no run-time switch) and to the kernel-log runner, whose XNNPACK prints the
microkernel it picks for each operator.

Three builds per platform, from one table (platform x SME2 x kernel log), mirroring Arm's kit
presets (mac-arm64 / mac-arm64-sme2-off / android-arm64-v9a / android-arm64-v9a-sme2-off and their
"xnnlog" variants) with the event tracer and devtools on and everything the runner does not link
off (no pybindings, tests, LLM extensions or executor_runner). Each ExecuTorch build is cached by
the source tree (commits, or a file-stat fingerprint for a tree without .git), its arguments and
the compiler; the runner on top is cached by build.build_runner.

Verified on this machine for linux-aarch64 (cross-compiled, run under QEMU); Android and macOS are
the same table with their toolchain lines, tested up to the toolchain boundary (docs/targets.md)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic, lifetime
from kit.core.errors import RunnerError
from kit.core.locks import file_lock
from kit.devices import sourcetree
from kit.runners.toolchains import SOURCE_DIR, Toolchain, find_tool

# What the runner links (kit/runners/CMakeLists.txt, source branch) and nothing else.
COMMON = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DEXECUTORCH_BUILD_XNNPACK=ON",
    "-DEXECUTORCH_XNNPACK_ENABLE_KLEIDI=ON",
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
    # Off: what the runner never links. Each costs build time on a 2-core machine.
    "-DEXECUTORCH_BUILD_EXECUTOR_RUNNER=OFF",
    "-DEXECUTORCH_BUILD_EXTENSION_EVALUE_UTIL=OFF",
    "-DEXECUTORCH_BUILD_EXTENSION_RUNNER_UTIL=OFF",
    "-DEXECUTORCH_BUILD_EXTENSION_LLM=OFF",
    "-DEXECUTORCH_BUILD_EXTENSION_LLM_RUNNER=OFF",
    "-DEXECUTORCH_BUILD_KERNELS_LLM=OFF",
    "-DEXECUTORCH_BUILD_PYBIND=OFF",
    "-DEXECUTORCH_BUILD_TESTS=OFF",
    "-DBUILD_TESTING=OFF",
)
SME2 = {
    True: ("-DXNNPACK_ENABLE_ARM_SME2=ON", "-DXNNPACK_ENABLE_ARM_SME=ON"),
    False: ("-DXNNPACK_ENABLE_ARM_SME2=OFF", "-DXNNPACK_ENABLE_ARM_SME=OFF"),
}
# The kernel-log variant: XNNPACK prints "Using <kind> microkernel '<name>'" as it picks kernels.
# XNNPACK's own XNN_LOG_LEVEL definition comes first on the compile line, so this one wins.
KERNEL_LOG_FLAGS = ("-UXNN_NO_LOGGING", "-DXNN_LOG_LEVEL=5")
# Compiler flags per platform (Arm's android-arm64-v9a presets build for Armv9-A).
PLATFORM_FLAGS = {"android-arm64-v8a": ("-march=armv9-a",)}
ANDROID_API = "android-24"
VARIANTS = ("sme2-on", "sme2-off", "kernel-log")


def cross_compiling(platform: str, machine: str | None = None) -> bool:
    """linux-aarch64 is cross-compiled (Debian's aarch64-linux-gnu toolchain) from any other machine."""
    return platform == "linux-aarch64" and (machine or os.uname().machine) not in ("aarch64", "arm64")


def platform_args(platform: str, ndk: Path | None, machine: str | None = None) -> tuple[str, ...]:
    """The toolchain lines: the only arguments that differ between platforms."""
    if platform == "android-arm64-v8a":
        return (
            f"-DCMAKE_TOOLCHAIN_FILE={ndk}/build/cmake/android.toolchain.cmake",
            "-DANDROID_ABI=arm64-v8a",
            f"-DANDROID_PLATFORM={ANDROID_API}",
            "-DANDROID_STL=c++_shared",
        )
    if platform == "macos-arm64":
        return ("-DCMAKE_OSX_ARCHITECTURES=arm64",)
    if platform == "linux-aarch64":
        return (
            (f"-DCMAKE_TOOLCHAIN_FILE={SOURCE_DIR / 'aarch64-linux-gnu.cmake'}",)
            if cross_compiling(platform, machine)
            else ()
        )
    if platform == "linux-x86_64" and (machine or os.uname().machine) == "x86_64":
        return ()  # a native build on this machine (kernel logs of x86 kernels)
    raise RunnerError(
        f"the source recipe does not know platform {platform!r} (on this machine)",
        "use one of android-arm64-v8a, macos-arm64, linux-aarch64 (or linux-x86_64 on an x86_64 machine)",
    )


@dataclass(frozen=True)
class SourceBuild:
    """Everything that determines one source build of ExecuTorch."""

    repo: Path
    platform: str
    sme2: bool
    kernel_log: bool = False
    ndk: Path | None = None
    kleidiai: Path | None = None  # KLEIDIAI_SOURCE_DIR: XNNPACK downloads KleidiAI at configure time without it
    machine: str | None = None  # the build machine (None: this one); decides cross-compiling
    c_workarounds: tuple[str, ...] = ()  # C flags a known compiler bug needs (compiler_workarounds)

    @property
    def name(self) -> str:
        return f"{self.platform}-sme2-{'on' if self.sme2 else 'off'}{'-xnnlog' if self.kernel_log else ''}"

    @property
    def flags(self) -> tuple[str, ...]:
        """The runner's cache-key flags: what makes two runners of one platform differ."""
        return (f"sme2={'on' if self.sme2 else 'off'}", f"kernel_log={'on' if self.kernel_log else 'off'}")

    def compiler_flags(self) -> tuple[str, ...]:
        flags = (*PLATFORM_FLAGS.get(self.platform, ()), *(KERNEL_LOG_FLAGS if self.kernel_log else ()))
        c_flags = (*flags, *self.c_workarounds)
        return (
            *((f"-DCMAKE_C_FLAGS={' '.join(c_flags)}",) if c_flags else ()),
            *((f"-DCMAKE_CXX_FLAGS={' '.join(flags)}",) if flags else ()),
        )

    def executorch_args(self, install_prefix: Path | None = None) -> list[str]:
        args = [
            *COMMON,
            *SME2[self.sme2],
            *self.compiler_flags(),
            *platform_args(self.platform, self.ndk, self.machine),
        ]
        if self.kleidiai:
            args.append(f"-DKLEIDIAI_SOURCE_DIR={self.kleidiai}")
        if install_prefix is not None:
            args.append(f"-DCMAKE_INSTALL_PREFIX={install_prefix}")
        return args

    def commands(
        self, build_dir: Path, cmake: str = "cmake", jobs: int = 2, ninja: str | None = None
    ) -> list[list[str]]:
        """Configure, then build and install ExecuTorch into build_dir/install."""
        et_build, prefix = build_dir / "build", build_dir / "install"
        make = [f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
        return [
            [cmake, "-S", str(self.repo), "-B", str(et_build), "-G", "Ninja", *make, *self.executorch_args(prefix)],
            [cmake, "--build", str(et_build), "--target", "install", "--parallel", str(jobs)],
        ]

    def runner_cmake_args(self) -> tuple[str, ...]:
        """The runner is built with the same toolchain lines (never the ExecuTorch options)."""
        return platform_args(self.platform, self.ndk, self.machine)


def check_inputs(repo: str | None, platform: str, ndk: str | None) -> tuple[Path, Path | None]:
    """A clear error for a missing checkout or NDK, naming what to install."""
    if not repo:
        raise RunnerError(
            f"the source recipe for {platform} needs an ExecuTorch source tree",
            "run `sme2 source fetch` (ExecuTorch at the wheel's commit), or set EXECUTORCH_REPO to a "
            "`git clone --recursive` of pytorch/executorch (or executorch_repo in the device entry); see docs/targets.md",
        )
    repo_path = Path(repo).expanduser()
    if not (repo_path / "CMakeLists.txt").exists() or not (repo_path / "backends" / "xnnpack").is_dir():
        raise RunnerError(
            f"{repo_path} is not an ExecuTorch source tree (no CMakeLists.txt or backends/xnnpack)",
            "point EXECUTORCH_REPO at a `git clone --recursive` of pytorch/executorch; see docs/targets.md",
        )
    third = repo_path / "backends" / "xnnpack" / "third-party"
    missing = [
        name
        for name, probe in (
            ("XNNPACK", third / "XNNPACK" / "CMakeLists.txt"),
            ("cpuinfo", third / "cpuinfo" / "CMakeLists.txt"),
            ("pthreadpool", third / "pthreadpool" / "CMakeLists.txt"),
            ("flatbuffers", repo_path / "third-party" / "flatbuffers" / "CMakeLists.txt"),
            ("flatcc", repo_path / "third-party" / "flatcc" / "CMakeLists.txt"),
        )
        if not probe.exists()
    ]
    if missing:
        raise RunnerError(
            f"the ExecuTorch tree {repo_path} has no {', '.join(missing)} submodule"
            + ("s" if len(missing) > 1 else ""),
            f"run: git -C {repo_path} submodule update --init --recursive",
        )
    if repo_path.resolve().name != "executorch":
        # ExecuTorch's CMakeLists.txt refuses any other folder name (pytorch/executorch#6475).
        raise RunnerError(
            f"the ExecuTorch tree {repo_path} must be in a folder named exactly 'executorch'",
            f"rename or clone it as .../executorch (e.g. git clone --recursive ... {repo_path.parent}/executorch)",
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


def kleidiai_dir(device=None) -> Path | None:
    """An offline KleidiAI tree (`KLEIDIAI_SOURCE_DIR`); without one XNNPACK downloads it."""
    value = (device.props.get("kleidiai_source_dir") if device is not None else None) or os.environ.get(
        "KLEIDIAI_SOURCE_DIR"
    )
    if not value:
        return None
    path = Path(value).expanduser()
    if not (path / "CMakeLists.txt").exists():
        raise RunnerError(
            f"KLEIDIAI_SOURCE_DIR {path} is not a KleidiAI source tree (no CMakeLists.txt)",
            "unset it (XNNPACK then downloads KleidiAI) or point it at a KleidiAI checkout",
        )
    return path


def spec_for(device, sme2: bool, kernel_log: bool = False) -> SourceBuild:
    repo, ndk = check_inputs(
        sourcetree.configured_tree(device.props),
        device.platform,
        device.props.get("android_ndk") or os.environ.get("ANDROID_NDK"),
    )
    spec = SourceBuild(repo, device.platform, sme2, kernel_log, ndk, kleidiai_dir(device))
    return dataclasses.replace(spec, c_workarounds=compiler_workarounds(compiler_identity(compilers(spec)[0])))


def compiler_workarounds(identity: str) -> tuple[str, ...]:
    """C flags for known compiler bugs. GCC 12 (Debian 12's aarch64 cross compiler, 12.2) crashes in
    the loop vectorizer (internal compiler error in vect_transform_reduction) on KleidiAI's
    kai_lhs_quant_pack_qai8dxp_bf16_neon.c: loop vectorization off for C code with GCC 12."""
    version = identity.rsplit(")", 1)[-1].strip() if "gcc" in identity.lower() else ""
    return ("-fno-tree-loop-vectorize",) if version.startswith("12.") else ()


def compilers(spec: SourceBuild) -> tuple[str, str]:
    """(C, C++) compilers for the platform: the NDK's clang, Apple's clang, Debian's cross gcc."""
    if spec.ndk:
        found = sorted((spec.ndk / "toolchains" / "llvm" / "prebuilt").glob("*/bin/clang++"))
        if not found:
            raise RunnerError(f"no clang++ in the Android NDK {spec.ndk}", "install a complete NDK r27 or newer")
        return str(found[0])[: -len("++")], str(found[0])
    if spec.platform == "macos-arm64":
        return "clang", "clang++"
    if cross_compiling(spec.platform, spec.machine):
        return "aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++"
    return os.environ.get("CC", "cc"), os.environ.get("CXX", "c++")


def compiler_identity(cxx: str) -> str:
    """`<path>: <first line of --version>`: a new compiler means a new build."""
    path = shutil.which(cxx) or cxx
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    return f"{path}: {(version.splitlines() or ['unknown'])[0]}"


# Folders inside a source tree that builds write to: never part of its fingerprint.
_SKIP_DIRS = {".git", "cmake-out", "cmake-android-out", "pip-out", "build", "__pycache__", "cmake-out-android"}
# flatcc's CMake writes its libraries and tools into its own source folder.
_SKIP_PATHS = {os.path.join("third-party", "flatcc", "lib"), os.path.join("third-party", "flatcc", "bin")}


_FINGERPRINTS: dict[str, tuple[float, dict]] = {}
FINGERPRINT_TTL_S = 300.0  # one profile session asks once per block; a tree walk costs seconds


def tree_fingerprint(path: Path) -> dict:
    """What identifies a source tree: its commit and its submodules' commits for a git checkout
    (plus whether it has local changes), else a hash of every file's path, size and mtime.
    Remembered for a few minutes within one process."""
    key = str(Path(path).resolve())
    cached = _FINGERPRINTS.get(key)
    if cached and time.monotonic() - cached[0] < FINGERPRINT_TTL_S:
        return cached[1]
    found = _fingerprint(Path(path))
    _FINGERPRINTS[key] = (time.monotonic(), found)
    return found


def _fingerprint(path: Path) -> dict:
    if (path / ".git").exists():

        def git(*args: str) -> str:
            done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=120)
            return done.stdout.strip() if done.returncode == 0 else ""

        head = git("rev-parse", "HEAD")
        if head:
            return {
                "commit": head,
                "submodules": git("submodule", "status", "--recursive"),
                "changes": hashlib.sha256(git("status", "--porcelain", "--untracked-files=no").encode()).hexdigest()[
                    :16
                ],
            }
    h = hashlib.sha256()
    files = 0
    for dirpath, dirnames, filenames in os.walk(path):
        rel = os.path.relpath(dirpath, path)
        dirnames[:] = sorted(
            d for d in dirnames if d not in _SKIP_DIRS and os.path.normpath(os.path.join(rel, d)) not in _SKIP_PATHS
        )
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            h.update(f"{os.path.relpath(full, path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            files += 1
    return {"files": files, "stat_sha256": h.hexdigest()[:16]}


def build_key(spec: SourceBuild, compiler: str) -> tuple[str, dict]:
    """The cache key of one ExecuTorch build and what went into it."""
    identity = {
        "executorch": tree_fingerprint(spec.repo),
        "kleidiai": tree_fingerprint(spec.kleidiai) if spec.kleidiai else None,
        "args": spec.executorch_args(),
        "compiler": compiler,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12], identity


def source_version(repo: Path) -> str:
    try:
        return (Path(repo) / "version.txt").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def toolchain(device, root, sme2: bool, kernel_log: bool = False) -> Toolchain:
    """The runner toolchain for a source-recipe device: the ExecuTorch install it links (built on
    first use by build.build_runner through `ensure_executorch`)."""
    spec = spec_for(device, sme2, kernel_log)
    cc, cxx = compilers(spec)
    key, identity = build_key(spec, compiler_identity(cxx))
    folder = root.runners / "executorch-source" / f"{spec.name}-{key}"
    return Toolchain(
        platform=device.platform,
        executorch_root=folder / "install",
        cxx=cxx,
        # The install has no devtools headers (etdump_flatcc.h): the runner reads them from the tree
        # and the build's generated flatcc headers (kit/runners/CMakeLists.txt).
        cmake_args=(
            *spec.runner_cmake_args(),
            f"-DSME2_EXECUTORCH_SOURCE={spec.repo}",
            f"-DSME2_EXECUTORCH_BUILD={folder / 'build'}",
        ),
        extra={"source_build": spec, "source_folder": folder, "source_identity": identity, "cc": cc},
    )


def runner_flags(tc: Toolchain) -> tuple[str, ...]:
    """The runner's cache-key flags for a source toolchain: the variant and the ExecuTorch build."""
    spec: SourceBuild = tc.extra["source_build"]
    return (*spec.flags, f"executorch={Path(tc.extra['source_folder']).name}")


def ensure_executorch(tc: Toolchain, root, progress=None) -> Path:
    """Configure, build and install ExecuTorch once per cache key; returns the install prefix.

    The build folder stays (ninja continues where a killed build stopped); `build.json` is written
    last, so an install without it is never used."""
    spec: SourceBuild = tc.extra["source_build"]
    folder = Path(tc.extra["source_folder"])
    stamp = folder / "build.json"
    with file_lock(root.runners / f".source-{folder.name}.lock"):
        if stamp.exists() and (folder / "install" / "lib").is_dir():
            return folder / "install"
        say = progress or (lambda msg: None)
        cmake, ninja = find_tool("cmake"), find_tool("ninja")
        # Compilers come from the toolchain file (cross, NDK) or the defaults, never CC/CXX: the
        # host tools ExecuTorch builds on the way (flatc, flatcc) must stay host binaries.
        env = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX")}
        # ExecuTorch compiles through ccache when it is installed. Paths relative to this folder's
        # parent make the variants' identical objects (all but XNNPACK's) shared between them.
        env.setdefault("CCACHE_BASEDIR", str(folder.parent))
        folder.mkdir(parents=True, exist_ok=True)
        seconds = {}
        for argv in spec.commands(folder, cmake, jobs=os.cpu_count() or 2, ninja=ninja):
            step = "configure" if argv[1] == "-S" else "build"
            say(f"ExecuTorch source build {spec.name}: {step} (the build takes long; log: {folder / (step + '.log')})")
            t0 = time.monotonic()
            with open(folder / f"{step}.log", "w") as log:
                log.write(f"$ {' '.join(argv)}\n")
                log.flush()
                # cmake dies with this process; ninja under it on its next write to the closed pipe.
                proc = subprocess.run(
                    argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=lifetime.die_with_parent()
                )
            seconds[step] = round(time.monotonic() - t0, 1)
            if proc.returncode != 0:
                tail = "\n".join((folder / f"{step}.log").read_text(errors="replace").strip().splitlines()[-15:])
                raise RunnerError(
                    f"ExecuTorch source build failed ({spec.name}, {step}, exit {proc.returncode}):\n{tail}",
                    "check the tree's submodules and the toolchain (the commands come from kit/runners/source.py); "
                    f"full log: {folder / (step + '.log')}",
                )
        if spec.platform == "android-arm64-v8a":
            _copy_cxx_shared(spec, folder / "install" / "lib")
        atomic.write_json(
            stamp,
            {
                "name": spec.name,
                "identity": tc.extra["source_identity"],
                "version": source_version(spec.repo),
                "seconds": seconds,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    return folder / "install"


def _copy_cxx_shared(spec: SourceBuild, lib_dir: Path) -> None:
    """ANDROID_STL=c++_shared: the runner needs the NDK's libc++_shared.so beside it on the phone."""
    found = sorted(
        (spec.ndk / "toolchains" / "llvm" / "prebuilt").glob("*/sysroot/usr/lib/aarch64-linux-android/libc++_shared.so")
    )
    if not found:
        raise RunnerError(f"no libc++_shared.so for arm64 in the NDK {spec.ndk}", "install a complete NDK r27 or newer")
    shutil.copy2(found[0], lib_dir / "libc++_shared.so")


def build_info(tc: Toolchain) -> dict:
    """What the runner manifest records about the ExecuTorch it links."""
    folder = Path(tc.extra["source_folder"])
    try:
        stamp = json.loads((folder / "build.json").read_text())
    except (OSError, ValueError):
        stamp = {}
    spec: SourceBuild = tc.extra["source_build"]
    return {
        "executorch_source": str(spec.repo),
        "executorch_source_version": stamp.get("version", source_version(spec.repo)),
        "executorch_build": folder.name,
        "executorch_build_seconds": stamp.get("seconds"),
        "sme2_build": spec.sme2,
        "kernel_log": spec.kernel_log,
    }
