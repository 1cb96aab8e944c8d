"""The agent skills and their checks.

- Fast: the known-good run reproduces its expected summary, and a tampered copy is caught; names
  and scopes are validated.
- Slow: the five skills' steps and `sme2 check` verifications, run in sequence from their SKILL.md
  on a fresh data root, pass; then removing an artifact makes the right check fail with a message
  naming it, and a changed operator mix fails the regression check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.skills import checks, knowngood
from kit.skills.contract import Scope
from tests import docblocks

REPO = Path(__file__).resolve().parent.parent
SKILLS = REPO / "skills"
SEQUENCE = ["env-setup", "export-model", "build-runners", "run-pipeline", "summarize-results"]
TARGETS = "host.sme2-off,armv9-qemu.sme2-on,armv9-qemu.sme2-off"


def test_known_good_run_reproduces_its_expected_summary(tmp_path):
    root = DataRoot.resolve(tmp_path / "empty")
    problems = knowngood.check(root, Scope())
    # The tooling part passes; with an empty data root the only problem is the missing fresh run.
    assert [p.kind for p in problems] == ["run"]
    assert "armv9-qemu.sme2-on" in problems[0].what and "sme2 profile" in problems[0].hint
    size = sum(f.stat().st_size for f in knowngood.DEFAULT_BASELINE.iterdir())
    assert 10_000 < size < 400_000  # a real trace, small enough to commit


def test_a_changed_analysis_result_fails_the_known_good_check(tmp_path):
    base = tmp_path / "known-good"
    shutil.copytree(knowngood.DEFAULT_BASELINE, base)
    expected = json.loads((base / "analysis.json").read_text())
    expected["category_totals_ms"]["GEMM"] *= 1.01  # as if the tooling now summed GEMMs differently
    (base / "analysis.json").write_text(json.dumps(expected))
    problems = knowngood.check(DataRoot.resolve(tmp_path / "root"), Scope(baseline=base))
    values = [p for p in problems if p.kind == "value"]
    assert [p.what for p in values] == ["known-good/analysis.json:category_totals_ms.GEMM"]
    assert "re-analysing the known-good ETDump gives" in values[0].message


def test_differences_compare_floats_to_a_tolerance():
    assert knowngood.differences({"a": [1.0, {"b": float("nan")}]}, {"a": [1.0 + 1e-12, {"b": float("nan")}]}) == []
    assert knowngood.differences({"a": 1.0, "c": "x"}, {"a": 1.1, "d": "x"}) == [
        ("a", 1.0, 1.1),
        ("c", "x", "<absent>"),
        ("d", "<absent>", "x"),
    ]


def test_scope_and_skill_names_are_validated(tmp_path):
    root = DataRoot.resolve(tmp_path)
    assert checks.skill_name("env_setup") == "env-setup"
    with pytest.raises(Sme2Error, match="unknown skill"):
        checks.run("rm -rf", root)
    with pytest.raises(Sme2Error, match="invalid model name"):
        Scope(model="../etc")
    with pytest.raises(Sme2Error, match="invalid target"):
        Scope(targets=["host"])
    with pytest.raises(Sme2Error, match="out of range"):
        Scope(max_slowdown=0.5)


@pytest.mark.slow  # re-exports after removing files: ~30 s on 2 cores (full tier)
def test_export_check_names_what_is_missing(home, exports, tmp_path):
    exports["fp32"]  # exported on first use (the fast tier exports nothing else)
    assert checks.run("export-model", home, Scope(dtypes=["fp32"])) == []
    assert [p.what for p in checks.run("export-model", home, Scope(dtypes=["fp32", "int8"]))] in (
        [],  # int8 already exported by an earlier test of this session
        ["exports/tiny_seg-int8-small/export_meta.json"],
    )
    missing = checks.run("export-model", DataRoot.resolve(tmp_path / "empty"), Scope(dtypes=["fp32"], size="full"))
    assert [(p.kind, p.what) for p in missing] == [("file", "exports/tiny_seg-fp32-full/export_meta.json")]
    assert missing[0].hint == "sme2 export --model tiny_seg --dtype fp32 --size full"


# ---------------------------------------------------------------- the skills, in sequence


def skill_env(home: Path, tools: Path, **inputs) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SME2_MODELS")}
    env.update(
        SME2_HOME=str(home),
        SME2_TOOLS=str(tools),
        PYTHONPATH=str(REPO),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        **inputs,
    )
    return env


def sh(script: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600
    )


def steps_and_verification(skill: str) -> tuple[list[str], list[str]]:
    """The runnable blocks of a SKILL.md: (Steps, Verification)."""
    path = SKILLS / skill / "SKILL.md"
    text = path.read_text().splitlines()
    verify_line = next(i + 1 for i, line in enumerate(text) if line == "## Verification")
    after = next(i + 1 for i, line in enumerate(text) if line.startswith("## ") and i + 1 > verify_line)
    runnable = [b for b in docblocks.blocks(path) if b.runs]
    steps = [b.text for b in runnable if b.line < verify_line]
    verify = [b.text for b in runnable if verify_line < b.line < after]
    assert verify, f"{skill}: no runnable verification block"
    return steps, verify


@pytest.mark.slow
@pytest.mark.qemu
def test_skills_in_sequence_on_a_fresh_data_root_then_a_missing_artifact(tmp_path, qemu_setup, home):
    fresh = tmp_path / "fresh"
    env = skill_env(fresh, home.tools, MODEL="tiny_seg", DTYPES="fp32", SIZE="small", TARGETS=TARGETS)
    for skill in SEQUENCE:
        steps, verify = steps_and_verification(skill)
        for script in steps:
            proc = sh(script, tmp_path, env)
            assert proc.returncode == 0, f"{skill} step failed:\n{script}\n{(proc.stdout + proc.stderr)[-3000:]}"
        for script in verify:
            proc = sh(script, tmp_path, env)
            assert proc.returncode == 0 and json.loads(proc.stdout) == [], (
                f"{skill}: {proc.stdout}{proc.stderr[-2000:]}"
            )
            assert f"check {skill} ok" in proc.stderr
    # The use cases on the same data root: the smoke test and the regression check.
    for skill in ("smoke-test", "regression-check"):
        steps, verify = steps_and_verification(skill)
        for script in steps + verify:
            proc = sh(script, tmp_path, env)
            assert proc.returncode == 0, f"{skill}:\n{script}\n{(proc.stdout + proc.stderr)[-3000:]}"

    # Negative: remove one run's robust statistics; run-pipeline's check names the file and the fix.
    root = DataRoot.resolve(fresh)
    run_dir = next(root.runs.glob("*-tiny_seg-fp32-armv9-qemu.sme2-off-*"))
    stats = next(run_dir.glob("*_robust_stats.json"))
    kept = tmp_path / stats.name
    shutil.move(stats, kept)
    check = f"sme2 check run-pipeline --dtype fp32 --target {TARGETS}"
    proc = sh(check, tmp_path, env)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)
    assert [(p["kind"], p["what"]) for p in problems] == [("file", str(stats.relative_to(root.path)))]
    assert problems[0]["message"] == f"{stats.name} is missing or empty"
    assert problems[0]["hint"] == "sme2 pipeline --model tiny_seg --dtype fp32 --target armv9-qemu.sme2-off"
    # The other skills' checks are not fooled into failing by it; putting the file back repairs it.
    assert sh("sme2 check export-model --dtype fp32", tmp_path, env).returncode == 0
    shutil.move(kept, stats)
    assert sh(check, tmp_path, env).returncode == 0

    # Negative: a baseline whose operator mix differs from the fresh run (one operator fewer).
    base = tmp_path / "baseline"
    shutil.copytree(knowngood.DEFAULT_BASELINE, base)
    ops_csv = next(base.glob("*_exec_ops_stats.csv"))
    ops = pd.read_csv(ops_csv)
    dropped = ops.op_type.iloc[-1]
    ops.iloc[:-1].to_csv(ops_csv, index=False)
    proc = sh(f"sme2 check regression-check --baseline {base}", tmp_path, env)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)
    assert {p["what"] for p in problems} == {f"operators:{dropped}"}
    assert "new since known-good" in problems[0]["message"]
