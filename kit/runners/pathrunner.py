"""The `path` runner recipe: a runner binary the user names by path (a config's `runner_path`),
any executor_runner-compatible program: ExecuTorch's own `executor_runner`, the builds Arm's kit
makes (SME2 on, SME2 off, kernel-log), or our sme2_runner, which accepts the same flags.

It is driven with executor_runner's flags (kit.runners.invoke.run_executor_runner) and tracked by
its sha256, like a runner we build. The path is what a person typed: it is checked to be an
existing, executable regular file and never reaches a shell."""

from __future__ import annotations

import os
from pathlib import Path

from kit.core import atomic
from kit.core.errors import RunnerError
from kit.runners.build import RunnerBinary

RECIPE = "path"

# ELF e_machine values and Mach-O magics -> the platform family a binary runs on.
_ELF_MACHINES = {0x3E: "linux-x86_64", 0xB7: "linux-aarch64"}
_MACHO_MAGICS = (b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")


def binary_platform(path: Path) -> str | None:
    """'linux-x86_64', 'linux-aarch64' (also Android's), 'macos', or None when the header says
    nothing we know (a script, another architecture)."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return None
    if head[:4] == b"\x7fELF" and len(head) >= 20:
        little = head[5] == 1
        machine = int.from_bytes(head[18:20], "little" if little else "big")
        return _ELF_MACHINES.get(machine)
    if head[:4] in _MACHO_MAGICS:
        return "macos"
    return None


def runs_on(binary_plat: str | None, device_platform: str) -> bool:
    """Whether a binary of `binary_plat` can run on a device of `device_platform` (unknown: yes)."""
    if binary_plat is None:
        return True
    if binary_plat == "macos":
        return device_platform.startswith("macos")
    if binary_plat == "linux-aarch64":
        return device_platform in ("linux-aarch64", "android-arm64-v8a")
    return device_platform == binary_plat


def from_path(path: str | os.PathLike, source: str = "runner_path") -> RunnerBinary:
    """The binary at `path` as a RunnerBinary (recipe "path"); `source` names where the path came
    from (e.g. "configs/mac.json: experiments[0].runner_path") for the error messages. Libraries in
    a `lib/` folder beside it (our runner's layout) go along to remote devices."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RunnerError(
            f"{source}: runner {p} does not exist",
            "build it first (Arm's kit: scripts/build_runners.sh; ours: sme2 build-runner) or fix the path",
        )
    if not p.is_file():
        raise RunnerError(f"{source}: runner {p} is not a file", "point runner_path at the executor_runner binary")
    if not os.access(p, os.X_OK):
        raise RunnerError(f"{source}: runner {p} is not executable", f"chmod +x {p}")
    resolved = p.resolve()
    lib = resolved.parent / "lib"
    manifest = {
        "recipe": RECIPE,
        "path": str(resolved),
        "platform": binary_platform(resolved),
        "binary_sha256": atomic.sha256_file(resolved),
    }
    return RunnerBinary(resolved, resolved.parent, manifest, lib if lib.is_dir() else None)


def link(binary: RunnerBinary, at: str | os.PathLike) -> Path:
    """A symlink at `at` to a runner we built (`sme2 build-runner --link`), so a config written for
    Arm's layout (runner_path = executorch/cmake-out/<preset>/executor_runner) runs our binary. An
    existing symlink is replaced atomically; an existing regular file is never overwritten."""
    at = Path(at).expanduser()
    if at.is_dir() and not at.is_symlink():
        raise RunnerError(f"--link {at} is a folder", f"name the link itself, e.g. {at / 'executor_runner'}")
    if at.exists() and not at.is_symlink():
        raise RunnerError(f"--link {at} is an existing file, not a link", "remove it first, or choose another path")
    at.parent.mkdir(parents=True, exist_ok=True)
    tmp = at.parent / f".{at.name}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(binary.path, tmp)
    os.replace(tmp, at)
    return at
