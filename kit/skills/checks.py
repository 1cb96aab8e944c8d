"""One verification per agent skill: `run(skill, root, scope)` returns the Problems found (an empty
list means the skill's outputs are all there and in range). Each problem names the file, key or
value and says what to do, so an agent can act on it without parsing prose.

The skills and what their check looks at:

    env-setup          Python, the pinned packages, cmake, a C++ compiler, the data root, the emulator
    export-model       exports/<model>-<dtype>-<size>/: .pte (sha256 as recorded), ETRecord, meta keys,
                       the numerical check, delegation
    build-runners      runners/<recipe>-<platform>-<hash>/ of each target: binary, manifest keys, sha256
    run-pipeline       the newest run of each variant x target: run folder files (ETDump, robust stats,
                       operator and category tables), statistics in range, warehouse rows, SME2 kernels
    summarize-results  reports/<variant>/ up to date with the current runs; the SME2 on/off table
    smoke-test         build-runners + run-pipeline of the default model on the host target
    regression-check   kit.skills.knowngood: the known-good run re-analysed, and the current run of its
                       key compared with it
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from kit import pipeline
from kit.analysis import compare, validation
from kit.core.atomic import sha256_file
from kit.core.errors import Sme2Error
from kit.core import platforms
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.core.names import Target, Variant
from kit.devices import inventory, toolsetup
from kit.export import artifact
from kit.profile.runrecord import RUN_FILE, RunRecord
from kit.runners import build, recipes
from kit.runners.toolchains import find_tool
from kit.skills import knowngood
from kit.skills.contract import (
    COVERAGE_RANGE,
    EXPORT_KEYS,
    HOST_TARGET,
    OPS_COLUMNS,
    PINNED,
    REPORT_FILES,
    REQUIRED_PACKAGES,
    ROBUST_KEYS,
    RUNNER_KEYS,
    Problem,
    Scope,
    newest_run,
    op_table,
    rel,
    run_files,
)
from kit.stats.categories import BLOG_ORDER
from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse


def default_targets(root: DataRoot) -> list[str]:
    """The targets `sme2 pipeline` measures by default (the host, the emulated pair, and remote
    devices that declare their SME2), found without contacting a remote device."""
    return pipeline.target_partitions(root)


# ---------------------------------------------------------------- env-setup


# The Pythons executorch 1.5.1 publishes wheels for (cp310-cp313).
PYTHONS = ((3, 10), (3, 11), (3, 12), (3, 13))


def check_env(root: DataRoot, scope: Scope) -> list[Problem]:
    """What this machine needs. On macOS (an Apple-silicon Mac is itself an SME2 CPU) the emulated
    pair does not exist (no qemu-user): it is reported as unavailable, never as a problem."""
    problems = []
    if sys.version_info[:2] not in PYTHONS:
        problems.append(
            Problem(
                "value",
                "python",
                f"Python {sys.version.split()[0]}; the executorch 1.5.1 wheels are built for 3.10 to 3.13",
                "use Python 3.10, 3.11, 3.12 or 3.13 (3.11 is what CI tests)",
            )
        )
    for pkg, want in PINNED.items():
        have = _version(pkg)
        if have is None:
            problems.append(Problem("package", pkg, f"{pkg} is not installed", "run ./scripts/setup.sh"))
        elif have.split("+")[0] != want:
            problems.append(
                Problem(
                    "value",
                    pkg,
                    f"{pkg} {have} is installed; the platform is pinned to {want}",
                    f"pip install {pkg}=={want} (./scripts/setup.sh)",
                )
            )
    for pkg in REQUIRED_PACKAGES:
        if _version(pkg) is None:
            problems.append(Problem("package", pkg, f"{pkg} is not installed", "run ./scripts/setup.sh"))
    if shutil.which("sme2") is None:
        problems.append(Problem("tool", "sme2", "the sme2 command is not on PATH", "run ./scripts/setup.sh"))
    try:
        find_tool("cmake")
    except Sme2Error as e:
        problems.append(Problem("tool", "cmake", e.message, e.hint))
    mac = platforms.HOST_PLATFORM.startswith("macos")
    cxx = os.environ.get("CXX") or ("clang++" if mac else "g++")
    if shutil.which(cxx) is None:
        fix = "xcode-select --install (Apple clang), or set CXX" if mac else "apt-get install g++ (or set CXX)"
        problems.append(Problem("tool", cxx, f"no C++ compiler ({cxx}) for the native runner", fix))
    if not os.access(root.path, os.W_OK):
        problems.append(Problem("value", str(root.path), "the data root is not writable", "use --home or $SME2_HOME"))
    if scope.emulator and not mac:  # qemu-user is Linux-only: on a Mac the host is the SME2 CPU
        problems += _check_emulator(root)
    return problems


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _check_emulator(root: DataRoot) -> list[Problem]:
    setup_file = root.tools / toolsetup.SETUP_FILE
    info = toolsetup.load_setup(root)
    hint = "run: sme2 setup (QEMU >= 10.1, the aarch64 cross compiler and executorch package)"
    if info is None:
        return [Problem("file", str(setup_file), "the emulated SME2 targets are not set up", hint)]
    problems = []
    for key in ("qemu", "cross_cxx", "executorch_aarch64"):
        path = info.get(key)
        if not path or not Path(path).exists():
            problems.append(Problem("file", f"{setup_file}:{key}", f"{key} {path!r} does not exist", hint))
    probe = info.get("probe", {})
    if probe.get("sme2-on", {}).get("sme2") is not True:
        problems.append(Problem("value", "probe.sme2-on.sme2", "QEMU -cpu max does not report SME2", hint))
    if probe.get("sme2-off", {}).get("sme2") is not False:
        problems.append(Problem("value", "probe.sme2-off.sme2", "QEMU -cpu max,sme=off still reports SME2", hint))
    return problems


# ---------------------------------------------------------------- export-model


def check_export(root: DataRoot, scope: Scope, size: str | None = None) -> list[Problem]:
    problems = []
    size = size or scope.size
    for v in scope.variants:
        fix = f"sme2 export --model {v.model} --dtype {v.dtype} --size {size}"
        folder = artifact.folder_for(root, v, size)
        if not (folder / artifact.META).exists():
            problems.append(
                Problem("file", rel(root, folder / artifact.META), f"{v.key} ({size}) is not exported", fix)
            )
            continue
        try:
            exp = artifact.find(root, v, size)
        except Sme2Error as e:
            problems.append(Problem("file", rel(root, folder), e.message, e.hint))
            continue
        problems += [
            Problem("key", f"{rel(root, folder / artifact.META)}:{k}", f"export_meta.json lacks {k}", fix + " --force")
            for k in EXPORT_KEYS
            if k not in exp.meta
        ]
        for f in (exp.pte, exp.etrecord, exp.inputs, folder / "program_map.json"):
            if not f.exists():
                problems.append(Problem("file", rel(root, f), f"{f.name} is missing from the export", fix + " --force"))
        if exp.pte.exists() and sha256_file(exp.pte) != exp.meta.get("pte_sha256"):
            problems.append(
                Problem(
                    "value",
                    rel(root, exp.pte),
                    "the .pte's sha256 differs from export_meta.json",
                    fix + " --force",
                )
            )
        check = exp.meta.get("numerical_check", {})
        if not check.get("passed"):
            problems.append(
                Problem(
                    "value",
                    f"{rel(root, folder / artifact.META)}:numerical_check.passed",
                    f"the numerical check did not pass (max_rel_error {check.get('max_rel_error')})",
                    fix + " --force",
                )
            )
        if v.backend == "xnnpack" and not exp.meta.get("delegated_ops"):
            problems.append(
                Problem(
                    "value",
                    f"{rel(root, folder / artifact.META)}:delegated_ops",
                    "no operator was delegated to XNNPACK",
                    "check the model's ops (sme2 export --json lists non_delegated_op_names)",
                )
            )
    return problems


# ---------------------------------------------------------------- build-runners


def check_runners(root: DataRoot, scope: Scope) -> list[Problem]:
    problems, seen = [], set()
    registry = inventory.load_registry(root)
    for key in scope.targets or default_targets(root):
        target = Target.parse(key)
        fix = f"sme2 build-runner --target {key}"
        device = registry.get(target.device)
        if device is None:
            problems.append(Problem("value", key, f"unknown device {target.device!r}", "sme2 devices lists them"))
            continue
        try:
            tc = recipes.toolchain_for(device, root, target.sme2)
        except Sme2Error as e:
            problems.append(Problem("tool", key, e.message, e.hint))
            continue
        flags = recipes.build_flags(device, target.sme2)
        folder = build.cache_folder(root, tc, device.recipe, flags)
        if folder in seen:  # the emulated pair shares one binary
            continue
        seen.add(folder)
        binary = build.cached_runner(root, tc, device.recipe, flags)
        if binary is None:
            problems.append(
                Problem(
                    "file",
                    rel(root, folder / build.BINARY),
                    f"no runner built for {key} ({tc.platform}), or its binary no longer matches its manifest",
                    fix,
                )
            )
            continue
        problems += [
            Problem("key", f"{rel(root, folder / 'manifest.json')}:{k}", f"manifest.json lacks {k}", fix)
            for k in RUNNER_KEYS
            if k not in binary.manifest
        ]
        if not os.access(binary.path, os.X_OK):
            problems.append(Problem("value", rel(root, binary.path), "the runner is not executable", fix))
    return problems


# ---------------------------------------------------------------- run-pipeline


def check_runs(root: DataRoot, scope: Scope) -> list[Problem]:
    problems = []
    wh = Warehouse.at(root)
    targets = scope.targets or default_targets(root)
    if not wh.path.exists():
        return [
            Problem(
                "file",
                rel(root, wh.path),
                "there is no warehouse yet",
                f"sme2 pipeline --model {scope.model} --dtype {','.join(scope.dtypes)}",
            )
        ]
    for v in scope.variants:
        for key in targets:
            fix = f"sme2 pipeline --model {v.model} --dtype {v.dtype} --target {key}"
            run = newest_run(wh, v.key, key)
            if run is None:
                problems.append(Problem("run", f"{v.key} on {key}", "no run in the warehouse", fix))
                continue
            problems += _check_run(root, wh, run, v, fix)
    return problems


def _check_run(root: DataRoot, wh: Warehouse, run: pd.Series, v: Variant, fix: str) -> list[Problem]:
    problems = []
    run_dir = Path(run.run_dir or "")
    if not (run_dir / RUN_FILE).exists():
        return [Problem("file", rel(root, run_dir / RUN_FILE), f"the folder of run {run.run_id} is gone", fix)]
    for f in run_files(run_dir):
        if not f.exists() or f.stat().st_size == 0:
            problems.append(Problem("file", rel(root, f), f"{f.name} is missing or empty", fix))
    stem = RunRecord.load(run_dir).stem
    robust_path = run_dir / f"{stem}_robust_stats.json"
    if robust_path.exists() and robust_path.stat().st_size:
        try:
            robust = read_json(robust_path, "the robust statistics")
        except Sme2Error as e:
            robust = {}
            problems.append(Problem("file", rel(root, robust_path), e.message, fix))
        problems += [
            Problem("key", f"{rel(root, robust_path)}:{k}", f"the robust statistics lack {k}", fix)
            for k in ROBUST_KEYS
            if robust and k not in robust
        ]
        median = robust.get("median_ms")
        if robust and not (isinstance(median, (int, float)) and median > 0 and math.isfinite(median)):
            problems.append(
                Problem("value", f"{rel(root, robust_path)}:median_ms", f"median_ms is {median!r}, not > 0", fix)
            )
        if robust and robust.get("count") != int(run.iterations):
            problems.append(
                Problem(
                    "value",
                    f"{rel(root, robust_path)}:count",
                    f"{robust.get('count')} samples, but the run measured {int(run.iterations)} iterations",
                    fix,
                )
            )
    ops_path = run_dir / f"{stem}_exec_ops_stats.csv"
    if ops_path.exists() and ops_path.stat().st_size:
        ops = op_table(ops_path)
        problems += [
            Problem("key", f"{rel(root, ops_path)}:{c}", f"the operator table lacks the column {c}", fix)
            for c in OPS_COLUMNS
            if c not in ops.columns
        ]
        if ops.empty:
            problems.append(Problem("value", rel(root, ops_path), "the operator table has no rows", fix))
        elif "category" in ops.columns and not set(ops.category) <= set(BLOG_ORDER):
            odd = sorted(set(ops.category) - set(BLOG_ORDER))
            problems.append(Problem("value", f"{rel(root, ops_path)}:category", f"unknown categories {odd}", fix))
    lo, hi = COVERAGE_RANGE
    if not (run.coverage is not None and lo < float(run.coverage) <= hi):
        problems.append(
            Problem(
                "value",
                f"warehouse:runs[{run.run_id}].coverage",
                f"operators explain {run.coverage!r} of Method::execute, outside ({lo}, {hi}]",
                fix,
            )
        )
    for col in ("n_samples", "n_op_events", "n_op_stats"):
        if not int(run[col]) > 0:
            problems.append(Problem("value", f"warehouse:runs[{run.run_id}].{col}", f"{col} is 0", fix))
    ops_rows = stored_runs.operator_rows(wh, run.run_id)[["op_type"]]
    gate = validation.sme2_kernels(ops_rows, bool(run.sme2), v.dtype)
    if not gate.passed:
        problems.append(
            Problem(
                "value",
                f"warehouse:kernels[{run.run_id}]",
                gate.message,
                'SME2 on needs a CPU with SME2 (or the emulated armv9-qemu.sme2-on); SME2 off on SME2 hardware needs recipe = "source"',
            )
        )
    return problems


# ---------------------------------------------------------------- summarize-results


def check_reports(root: DataRoot, scope: Scope) -> list[Problem]:
    problems = []
    wh = Warehouse.at(root)
    targets = scope.targets or default_targets(root)
    for v in scope.variants:
        fix = f"sme2 report --model {v.model} --dtype {v.dtype}"
        folder = root.path / "reports" / v.key
        for name in REPORT_FILES:
            if not (folder / name).exists():
                problems.append(Problem("file", rel(root, folder / name), f"no {name} for {v.key}", fix))
        if not list(folder.glob("*.png")):
            problems.append(Problem("file", rel(root, folder / "*.png"), f"no chart images for {v.key}", fix))
        md = folder / "report.md"
        if md.exists():
            text = md.read_text(errors="replace")
            for key in targets:
                run = newest_run(wh, v.key, key)
                if run is not None and run.run_id not in text:
                    problems.append(
                        Problem(
                            "value",
                            rel(root, md),
                            f"the report predates run {run.run_id} ({key}): it shows older numbers",
                            fix,
                        )
                    )
        for device in sorted({Target.parse(t).device for t in targets}):
            if {f"{device}.sme2-on", f"{device}.sme2-off"} <= set(targets):
                try:
                    compare.compare(wh, v.key, device)
                except Sme2Error as e:
                    problems.append(Problem("run", f"{v.key} on {device}", e.message, e.hint))
    return problems


# ---------------------------------------------------------------- use cases


def check_smoke(root: DataRoot, scope: Scope) -> list[Problem]:
    """The smallest end-to-end proof: the default model exported, a host runner, a host run."""
    host = Scope(model=scope.model, dtypes=scope.dtypes, targets=scope.targets or [HOST_TARGET], size=scope.size)
    return check_runners(root, host) + check_runs(root, host)


# Skill names as the open Agent Skills layout spells them (skills/<name>/SKILL.md: lowercase and
# hyphens); the learning-path plan's spelling with underscores (env_setup) is accepted too.
SKILLS = {
    "env-setup": check_env,
    "export-model": check_export,
    "build-runners": check_runners,
    "run-pipeline": check_runs,
    "summarize-results": check_reports,
    "smoke-test": check_smoke,
    "regression-check": knowngood.check,
}


def skill_name(name: str) -> str:
    """The canonical skill name (`env_setup` -> `env-setup`), or an Sme2Error listing them."""
    canonical = name.replace("_", "-") if isinstance(name, str) else name
    if canonical not in SKILLS:
        raise Sme2Error(f"unknown skill {name!r}", f"use one of {', '.join(SKILLS)}")
    return canonical


def run(skill: str, root: DataRoot, scope: Scope | None = None) -> list[Problem]:
    """The problems of one skill's outputs; [] when it passed."""
    return SKILLS[skill_name(skill)](root, scope or Scope())


def pipeline_artifacts(root: DataRoot, variants: list[str], targets: list[str]) -> tuple[list[Path], list[Problem]]:
    """What `sme2 pipeline` leaves for these variants and targets (the newest run of each pair):
    the program, ETRecord and meta; the run folder's ETDump, statistics and tables; the report;
    the warehouse. Returns (paths, problems), the problems naming what is missing."""
    wh = Warehouse.at(root)
    paths: list[Path] = []
    problems: list[Problem] = []
    exports_seen = set()
    for vkey in variants:
        v = Variant.parse(vkey)
        for key in targets:
            fix = f"sme2 pipeline --model {v.model} --dtype {v.dtype} --target {key}"
            run = newest_run(wh, v.key, key)
            if run is None:
                problems.append(Problem("run", f"{v.key} on {key}", "no run in the warehouse", fix))
                continue
            if (v.key, run["size"]) not in exports_seen:
                exports_seen.add((v.key, run["size"]))
                folder = artifact.folder_for(root, v, run["size"])
                paths += [folder / f"{v.stem}.pte", folder / f"{v.stem}.etrecord", folder / artifact.META]
            run_dir = Path(run.run_dir)
            paths += [f for f in run_files(run_dir) if f.name not in ("run.json", "timing.json")]
        paths += [root.path / "reports" / v.key / name for name in REPORT_FILES]
    paths.append(wh.path)
    problems += [
        Problem("file", rel(root, p), f"{p.name} is missing", "re-run sme2 pipeline") for p in paths if not p.exists()
    ]
    return paths, problems
