"""The `sme2` command line, run as a user runs it."""

import json
import os
import subprocess
import sys

import pytest


def sme2(*args, home, check=True):
    env = {**os.environ, "SME2_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"sme2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_profile_default_model_on_host(home, exports, native_runner):
    exports["fp32"]  # exported here, shared with the other tests: the command finds it
    proc = sme2("profile", "--size", "small", "--iterations", "5", "--json", home=home.path)
    runs = json.loads(proc.stdout)
    assert len(runs) == 1
    r = runs[0]
    assert r["model"] == "tiny_seg" and r["target"] == "host.sme2-off" and r["runner"] == "native"
    cats = {c["category"] for c in r["categories"]}
    assert "Convolution" in cats
    assert os.path.isdir(r["run_dir"])


def test_profile_prints_a_category_table(home, exports, native_runner):
    exports["fp32"]
    proc = sme2("profile", "--size", "small", "--iterations", "3", home=home.path)
    assert "Categories" in proc.stdout and "Convolution" in proc.stdout and "run folder:" in proc.stdout


def test_models_lists_the_default_model(home):
    data = json.loads(sme2("models", "--json", home=home.path).stdout)
    assert any(m["name"] == "tiny_seg" and m["ok"] for m in data)


@pytest.mark.slow  # three CLI start-ups: over 20 s on 2 cores
def test_bad_input_exits_2_with_a_hint(home):
    proc = sme2("profile", "--model", "Bad/Name", home=home.path, check=False)
    assert proc.returncode == 2 and "invalid model name" in proc.stderr
    assert "[a-z0-9_]+" in proc.stderr  # the rule is printed as written, not eaten as markup
    proc = sme2("profile", "--target", "host.sme2-on", home=home.path, check=False)
    assert proc.returncode == 2 and "has no SME2" in proc.stderr
    proc = sme2("export", "--dtype", "int4", home=home.path, check=False)
    assert proc.returncode == 2 and "unknown dtype" in proc.stderr


def test_analyze_rereads_a_run(home, recorded_run):
    data = json.loads(sme2("analyze", str(recorded_run.run_dir), "--json", home=home.path).stdout)
    assert data["run_id"] == recorded_run.record.run_id
    assert abs(data["coverage"] - recorded_run.analysis.coverage) < 1e-9
