"""Building the native runner against an executorch package, cached by what determines the binary:
the runner sources, the executorch version, the platform, the recipe and its build flags. A second
request for the same key is a no-op; concurrent requests wait on a lock instead of racing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic, environment, lifetime
from kit.core.errors import RunnerError
from kit.core.home import DataRoot
from kit.core.locks import file_lock
from kit.core.versions import executorch_version
from kit.runners import source
from kit.runners.toolchains import SOURCE_DIR, Toolchain, find_tool, host_toolchain

SOURCES = ("sme2_runner.cpp", "CMakeLists.txt")
BINARY = "sme2_runner"


@dataclass
class RunnerBinary:
    path: Path  # the executable
    folder: Path
    manifest: dict
    lib_dir: Path | None = None  # shared libraries a device needs beside the binary

    @property
    def sha256(self) -> str:
        return self.manifest["binary_sha256"]


def cache_key(tc: Toolchain, recipe: str = "wheel", flags: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes())
    h.update(json.dumps([executorch_version(), tc.platform, recipe, list(flags), list(tc.cmake_args)]).encode())
    return h.hexdigest()[:16]


def cache_folder(root: DataRoot, tc: Toolchain, recipe: str = "wheel", flags: tuple[str, ...] = ()) -> Path:
    """Where the runner for this toolchain, recipe and flags is (or would be) cached."""
    return root.runners / f"{recipe}-{tc.platform}-{cache_key(tc, recipe, flags)}"


def cached_runner(
    root: DataRoot, tc: Toolchain, recipe: str = "wheel", flags: tuple[str, ...] = ()
) -> RunnerBinary | None:
    """The cached runner if it is there and its binary still matches its manifest; never builds."""
    folder = cache_folder(root, tc, recipe, flags)
    manifest_path = folder / "manifest.json"
    if not (manifest_path.exists() and (folder / BINARY).exists()):
        return None
    manifest = json.loads(manifest_path.read_text())
    if atomic.sha256_file(folder / BINARY) != manifest.get("binary_sha256"):
        return None
    return RunnerBinary(
        folder / BINARY, folder, manifest, Path(manifest["lib_dir"]) if manifest.get("lib_dir") else None
    )


def _check_compiler(cxx: str) -> str:
    found = shutil.which(cxx) if not os.path.isabs(cxx) else (cxx if os.access(cxx, os.X_OK) else None)
    if not found:
        raise RunnerError(
            f"no C++ compiler: {cxx!r} was not found",
            "install one (Debian/Ubuntu: apt-get install g++; cross builds: g++-aarch64-linux-gnu) or set CXX to its path",
        )
    return found


def build_runner(
    root: DataRoot, tc: Toolchain | None = None, recipe: str = "wheel", flags: tuple[str, ...] = (), progress=None
) -> RunnerBinary:
    """Return the cached runner for this toolchain, building it first if needed: from the data
    root, else from the machine's build cache ($SME2_BUILD_CACHE/runners, shared by every data
    root: a fresh data root or CI clone does not compile again), else compiled here."""
    tc = tc or host_toolchain()
    folder = cache_folder(root, tc, recipe, flags)
    with file_lock(root.runners / f".{folder.name}.lock"):
        cached = cached_runner(root, tc, recipe, flags)
        if cached is not None:
            return cached
        shared = _machine_entry(tc, folder.name)
        if shared is None:
            return _build(root, tc, recipe, flags, folder, progress)
        with file_lock(shared.parent / f".{shared.name}.lock"):
            restored = _restore(shared, folder)
            if restored is not None:
                return restored
            built = _build(root, tc, recipe, flags, folder, progress)
            _offer(built.folder, shared)
            return built


def _machine_entry(tc: Toolchain, name: str) -> Path | None:
    """Where this runner is kept in the machine's build cache; None for source builds (their
    ExecuTorch lives in the data root) or when the cache folder cannot be made. The entry's name
    adds the executorch package's path: the manifest and the lib symlink point into it."""
    if "source_build" in tc.extra:
        return None
    base = environment.build_cache() / "runners"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return base / f"{name}-{hashlib.sha256(str(tc.executorch_root).encode()).hexdigest()[:8]}"


def _restore(entry: Path, folder: Path) -> RunnerBinary | None:
    """The machine cache's runner copied into the data root (atomically), if the entry is whole:
    its binary matches its manifest and the executorch libraries it names are still there."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        whole = atomic.sha256_file(entry / BINARY) == manifest.get("binary_sha256")
    except (OSError, ValueError):
        return None
    lib_dir = Path(manifest["lib_dir"]) if manifest.get("lib_dir") else None
    if not whole or (lib_dir is not None and not lib_dir.is_dir()):
        return None
    with atomic.staged_dir(folder) as stage:
        _copy_files(entry, stage)
        if lib_dir is not None:
            (stage / "lib").symlink_to(lib_dir, target_is_directory=True)
        manifest["cache"] = {"entry": str(entry), "restored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic.write_json(stage / "manifest.json", manifest)
    return RunnerBinary(folder / BINARY, folder, manifest, lib_dir)


def _offer(folder: Path, entry: Path) -> None:
    """Copy a finished runner into the machine cache; best effort (a full or read-only cache never
    fails a build)."""
    try:
        with atomic.staged_dir(entry) as stage:
            _copy_files(folder, stage)
    except OSError:
        pass


def _copy_files(src: Path, dst: Path) -> None:
    """The runner folder's files (binary, manifest, logs); its lib symlink is made, not copied."""
    for f in src.iterdir():
        if f.is_file() and not f.is_symlink():
            shutil.copy2(f, dst / f.name)


def _build(root: DataRoot, tc: Toolchain, recipe: str, flags: tuple[str, ...], folder: Path, progress) -> RunnerBinary:
    """Compile the runner into `folder` (the slow path of build_runner)."""
    key = cache_key(tc, recipe, flags)
    cxx = _check_compiler(tc.cxx)
    cmake, ninja = find_tool("cmake"), find_tool("ninja")
    if "source_build" in tc.extra:  # the source recipe first builds ExecuTorch itself
        source.ensure_executorch(tc, root, progress)
    if not any(
        (tc.executorch_root / p / "executorch-config.cmake").exists() for p in ("share/cmake", "lib/cmake/ExecuTorch")
    ):
        raise RunnerError(
            f"no executorch CMake package under {tc.executorch_root}",
            "install executorch==1.5.1 (pip), run `sme2 setup` for the aarch64 package, or check the source build's "
            "log under runners/executorch-source/",
        )
    t0 = time.monotonic()
    with atomic.staged_dir(folder) as stage:
        build_dir = stage / "build"
        configure = [
            cmake,
            "-S",
            str(SOURCE_DIR),
            "-B",
            str(build_dir),
            "-G",
            "Ninja",
            f"-DCMAKE_MAKE_PROGRAM={ninja}",
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DCMAKE_CXX_COMPILER={cxx}",
            f"-DCMAKE_PREFIX_PATH={tc.executorch_root}",
            *tc.cmake_args,
        ]
        for step, argv in (
            ("configure", configure),
            ("build", [cmake, "--build", str(build_dir), "--parallel", "2"]),
        ):
            if progress:
                progress(f"runner {step} ({tc.platform})")
            # cmake dies with this process; ninja under it on its next write to the closed pipe.
            proc = subprocess.run(
                argv, capture_output=True, text=True, errors="replace", preexec_fn=lifetime.die_with_parent()
            )
            (stage / f"{step}.log").write_text(proc.stdout + proc.stderr)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
                # The staging folder (and its log) is removed on failure: keep the log.
                kept = root.logs / f"{time.strftime('%Y%m%dT%H%M%S')}-runner-{step}-{folder.name}.log"
                shutil.copy2(stage / f"{step}.log", kept)
                raise RunnerError(
                    f"native runner {step} failed for {tc.platform} (exit {proc.returncode}):\n{tail}",
                    f"check the compiler and the executorch package; full log: {kept}",
                )
        shutil.copy2(build_dir / BINARY, stage / BINARY)
        shutil.rmtree(build_dir)
        lib_dir = tc.executorch_root / "lib"
        (stage / "lib").symlink_to(lib_dir, target_is_directory=True)
        manifest = {
            "recipe": recipe,
            "platform": tc.platform,
            "flags": list(flags),
            "cache_key": key,
            "executorch_version": (
                source.source_version(tc.extra["source_build"].repo)
                if "source_build" in tc.extra
                else executorch_version()
            ),
            **(source.build_info(tc) if "source_build" in tc.extra else {}),
            "executorch_root": str(tc.executorch_root),
            "lib_dir": str(lib_dir),
            "compiler": cxx,
            "compiler_version": subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[
                0
            ],
            "cmake_args": configure[3:],
            "binary_sha256": atomic.sha256_file(stage / BINARY),
            "build_seconds": round(time.monotonic() - t0, 2),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        atomic.write_json(stage / "manifest.json", manifest)
    return RunnerBinary(folder / BINARY, folder, manifest, lib_dir)
