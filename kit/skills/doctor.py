"""`sme2 doctor --report`: one file with what a maintainer needs from a user's machine to make sense
of a first Mac or phone run: the platform and Python, the pinned packages, the toolchain versions,
the target device as the platform sees it (its SME2 flags: sysctl hw.optional.arm on a Mac,
/proc/cpuinfo and getprop on a phone), the environment check, the ExecuTorch source tree, and a
short profile of tiny_seg with the label check (did SME2 kernels run exactly when the target says
SME2 on?).

The report holds paths, the host name and device serials: the command says so, to review it
before sending."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from importlib import metadata

from kit import pipeline
from kit.core import platforms
from kit.core.errors import LabelError, Sme2Error
from kit.core.home import DataRoot
from kit.core.settings import Measure
from kit.devices import inventory, sourcetree, toolsetup
from kit.devices.transports.base import run_local
from kit.profile import session
from kit.skills import checks
from kit.skills.contract import Scope

REPORT_VERSION = 1
PACKAGES = ("sme2-platform", "torch", "executorch", "dagster", "duckdb", "pandas", "cmake", "ninja")


def _first_line(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
        return None
    done = run_local(argv, 30)
    text = (done.stdout or done.stderr or "").strip()
    return text.splitlines()[0] if done.returncode == 0 and text else None


def toolchain() -> dict:
    """Each tool's own version line (None: not installed)."""
    mac = platforms.HOST_PLATFORM.startswith("macos")
    cxx = os.environ.get("CXX") or ("clang++" if mac else "c++")
    tools = {
        "cmake": ["cmake", "--version"],
        "ninja": ["ninja", "--version"],
        "cxx": [cxx, "--version"],
        "git": ["git", "--version"],
        "adb": ["adb", "version"],
    }
    if mac:
        tools["xcode_select"] = ["xcode-select", "-p"]
    out = {name: _first_line(argv) for name, argv in tools.items()}
    out["android_ndk"] = os.environ.get("ANDROID_NDK")
    return out


def packages() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def short_profile(root: DataRoot, target: str, iterations: int = 5) -> dict:
    """tiny_seg fp32 at the small size on `target`: its median, its operator types and the label
    check's verdict (a refused run is the finding, not an error)."""
    plan = session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32"],
        targets=[target],
        measure=Measure(size="small", iterations=iterations, warmup=1),
        counts=False,
    )
    t0 = time.monotonic()
    try:
        (result,) = pipeline.profile_and_store(plan, root)
    except LabelError as e:
        return {"target": target, "label_check": "refused", "reason": e.message, "hint": e.hint}
    except Sme2Error as e:
        return {"target": target, "label_check": "not run", "error": e.message, "hint": e.hint}
    rec = result.record
    ops = sorted(set(result.analysis.op_stats.op_type))
    return {
        "target": target,
        "label_check": "passed",
        "run_id": rec.run_id,
        "emulated": rec.emulated,
        "e2e_median_ms": rec.results["e2e_median_ms"],
        "what_the_time_is": "emulated time" if rec.emulated else "hardware time",
        "sme2_kernels_seen": rec.conditions.get("sme2_kernels_seen"),
        "operator_types": ops,
        "seconds": round(time.monotonic() - t0, 1),
    }


def report(root: DataRoot, target: str | None = None, profile: bool = True) -> dict:
    """Everything above, as one JSON-ready dict. `target` defaults to the host's SME2-on target
    when the host has SME2, else its SME2-off one."""
    device = None
    if target is None:
        host = inventory.resolve("host.sme2-off", root)
        target = "host.sme2-on" if host.transport.detect_sme2() else "host.sme2-off"
    try:
        resolved = inventory.resolve(target, root)
        device = {
            "target": target,
            "conditions": resolved.conditions(),
            "sme2_detected": resolved.transport.detect_sme2(),
            "recipe": resolved.recipe,
        }
    except Sme2Error as e:
        device = {"target": target, "error": e.message, "hint": e.hint}
    env = checks.check_env(root, Scope(emulator=platforms.HOST_PLATFORM.startswith("linux")))
    fetched = sourcetree.fetched_tree()
    return {
        "report_version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": {
            "sme2_platform": platforms.HOST_PLATFORM,
            "uname": list(platform.uname()),
            "python": sys.version.split()[0],
        },
        "packages": packages(),
        "toolchain": toolchain(),
        "emulator": toolsetup.load_setup(root),
        "env_setup_problems": [{"what": p.what, "message": p.message, "fix": p.hint} for p in env],
        "executorch_source": {
            "tree": sourcetree.configured_tree({}),
            "fetched_commit": sourcetree.fetched_manifest().get("commit") if fetched else None,
            "wheel_commit": _wheel_commit(),
        },
        "device": device,
        "profile": short_profile(root, target) if profile and "error" not in device else None,
    }


def _wheel_commit() -> str | None:
    try:
        return sourcetree.wheel_commit()
    except Sme2Error:
        return None
