"""One list of SME2_* environment variables (kit.core.environment): every read goes through it,
docs/environment.md lists the same ones, and the variables that are run settings can be set as
Dagster resource config (literally or with dg.EnvVar) for the run's steps."""

import ast
import os
from pathlib import Path

import dagster as dg
import pytest

from kit.core import environment
from kit.core.settings import Settings, SettingsError
from sme2_assets.resources import Sme2

REPO = Path(__file__).resolve().parent.parent


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "SME2_..." constants (variables are often named once, then used)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    out[t.id] = node.value.value
    return out


def sme2_reads_outside_environment(path: Path) -> list[str]:
    """`x.get(<SME2_ name>)`, `os.getenv(...)` and `x[<SME2_ name>]` reads (not writes) that do not
    go through kit.core.environment.get."""
    tree = ast.parse(path.read_text())
    consts = _constants(tree)

    def name_of(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return consts.get(node.id)
        if isinstance(node, ast.Attribute):  # lab.PG_ENV, shared.SHARED_ENV: resolved by name
            return node.attr if node.attr.isupper() else None
        return None

    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            owner = node.func.value
            through_env = isinstance(owner, ast.Name) and owner.id == "environment"
            if node.func.attr in ("get", "getenv", "pop") and not through_env:
                key = name_of(node.args[0])
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            key = name_of(node.slice)
        if key and (key.startswith("SME2_") or key.endswith("_ENV")):
            found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_every_sme2_variable_is_read_through_the_one_list():
    offenders = []
    for path in sorted([*(REPO / "kit").rglob("*.py"), *(REPO / "sme2_assets").rglob("*.py")]):
        if path != REPO / "kit" / "core" / "environment.py":
            offenders += sme2_reads_outside_environment(path)
    assert not offenders, f"read SME2_* variables with kit.core.environment.get: {offenders}"


def test_the_detector_sees_direct_reads(tmp_path):
    p = tmp_path / "m.py"
    p.write_text(
        'import os\nX_ENV = "SME2_X"\na = os.environ.get("SME2_HOME")\nb = os.environ[X_ENV]\n'
        'c = environment.get("SME2_HOME")\nos.environ["SME2_HOME"] = "w"\nd = env.get(lab.PG_ENV)\n'
    )
    global REPO
    saved, REPO = REPO, tmp_path
    try:
        assert [f.split(":")[1] for f in sme2_reads_outside_environment(p)] == ["3", "4", "7"]
    finally:
        REPO = saved


def test_unlisted_variables_cannot_be_read():
    with pytest.raises(KeyError, match="SME2_NOPE"):
        environment.get("SME2_NOPE")
    assert environment.get("SME2_HOME", {"SME2_HOME": "/x"}) == "/x"


def test_the_docs_list_the_same_variables():
    text = (REPO / "docs" / "environment.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `SME2_")]
    documented = [line.split("`")[1] for line in rows]
    assert documented == [v.name for v in environment.VARIABLES]
    for v, row in zip(environment.VARIABLES, rows):
        assert (f"`{v.setting}`" in row) == bool(v.setting), row


def test_settings_fields_that_are_variables_override_them_in_the_step(tmp_path, monkeypatch):
    monkeypatch.delenv("SME2_EXPORT_CACHE", raising=False)  # and restored after the test (set in-process)
    monkeypatch.setenv("SME2_SHARED_STORE", str(tmp_path / "lake"))
    cache = tmp_path / "cache"
    assert set(environment.BY_SETTING) <= set(Settings.model_fields) and set(Sme2.model_fields) == set(
        Settings.model_fields
    )
    seen = {}

    @dg.asset
    def probe(sme2: Sme2):
        seen.update(cache=os.environ.get("SME2_EXPORT_CACHE"), store=sme2.settings().shared_store)

    resource = Sme2(home=str(tmp_path / "root"), export_cache=str(cache), shared_store=dg.EnvVar("SME2_SHARED_STORE"))
    assert dg.materialize([probe], resources={"sme2": resource}).success
    assert seen == {"cache": str(cache), "store": str(tmp_path / "lake")}
    assert "SME2_EXPORT_CACHE" not in os.environ  # set for the step, put back after it
    # The data root and packages folder are passed explicitly, never through the environment.
    assert Settings.of(export_cache=str(cache), home="/r").overrides() == {"SME2_EXPORT_CACHE": str(cache)}
    for bad, field in ((dict(shared_catalog="mysql:x"), "shared_catalog"), (dict(tools="/a\n-b"), "tools")):
        with pytest.raises(SettingsError, match=field):
            Settings.of(**bad)
