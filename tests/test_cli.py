"""The `sme2` command line, run as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

from tests.clirun import sme2, sme2_here


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
    proc = sme2_here("profile", "--size", "small", "--iterations", "3", home=home.path)
    assert "Categories" in proc.stdout and "Convolution" in proc.stdout and "run folder:" in proc.stdout


def test_models_lists_the_default_model(home):
    data = json.loads(sme2_here("models", "--json", home=home.path).stdout)
    assert any(m["name"] == "tiny_seg" and m["ok"] for m in data)


def test_bad_input_exits_2_with_a_hint(home):
    proc = sme2_here("profile", "--model", "Bad/Name", home=home.path, check=False)
    assert proc.returncode == 2 and "invalid model name" in proc.stderr
    assert "[a-z0-9_]+" in proc.stderr  # the rule is printed as written, not eaten as markup
    proc = sme2_here("profile", "--target", "host.sme2-on", home=home.path, check=False)
    assert proc.returncode == 2 and "has no SME2" in proc.stderr
    proc = sme2_here("export", "--dtype", "int4", home=home.path, check=False)
    assert proc.returncode == 2 and "unknown dtype" in proc.stderr


def test_analyze_rereads_a_run(home, recorded_run):
    data = json.loads(sme2_here("analyze", str(recorded_run.run_dir), "--json", home=home.path).stdout)
    assert data["run_id"] == recorded_run.record.run_id
    assert abs(data["coverage"] - recorded_run.analysis.coverage) < 1e-9


# ---- the command line's front: fast answers, one listing, layouts that fit

HEAVY = ("pandas", "torch", "duckdb", "dagster", "executorch", "altair")


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["comapre"]])
def test_help_version_and_typos_import_no_command(argv):
    """`sme2 --help`, `--version` and a typo load no command module (those take seconds)."""
    code = (
        "import sys\n"
        "from kit.cli.main import cli\n"
        f"try:\n    cli({argv!r}, prog_name='sme2')\nexcept SystemExit:\n    pass\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
    if argv == ["comapre"]:
        assert "Did you mean compare?" in proc.stderr


def test_every_command_is_listed_and_loads():
    from kit.cli.main import COMMANDS, cli

    ctx = cli.context_class(cli)
    listed = cli.list_commands(ctx)
    assert set(COMMANDS) <= set(listed)
    for name in listed:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None and (cmd.name == name or hasattr(cmd, "list_commands")), name
    # Every command the CLI modules define is reachable from the listing.
    import typer

    from kit.cli import agent, analysis, configs, devices, models, profiling, skills, warehouse

    defined = {
        c.name or c.callback.__name__.removesuffix("_cmd").replace("_", "-")
        for m in (agent, analysis, configs, devices, models, profiling, skills, warehouse)
        for c in m.app.registered_commands
    }
    assert defined <= set(listed), defined - set(listed)
    assert typer  # (imported for the registered_commands of the apps above)


def test_wide_tables_switch_to_blocks_and_keep_paths_whole(capsys):
    import pandas as pd

    from kit.cli import common

    long_path = "/a/very/long/path/" + "x" * 150 + "/run"
    df = pd.DataFrame([{"run_id": "r1", "run_dir": long_path, "small_ms": 0.00042, "big": 123456.0}])
    narrow = common.console.width
    common.console.width = 80
    try:
        common.print_frame(df, "table", title="t")
    finally:
        common.console.width = narrow
    out = capsys.readouterr().out
    assert long_path in out  # never cut or wrapped
    assert "small_ms: 0.00042" in out and "big: 123,456" in out and "-- row 1 --" in out
