"""The front ends (the `sme2` command line, the MCP tools, the Dagster assets) parse input and
render output; what they show comes from one kit operation each: two runs chosen by selectors from
kit.analysis.compare.compare_selected. Fast: the recorded run, no profiling."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from kit.analysis import compare
from kit.cli.main import app
from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import current, warehouse
from kit.store.warehouse import Warehouse
from tests.runfolder import clone_run


def _cli(*argv: str) -> str:
    done = CliRunner().invoke(app, list(argv))
    assert done.exit_code == 0, done.output
    return done.output


@pytest.fixture
def two_runs(recorded_run, tmp_path) -> DataRoot:
    """The recorded host run stored twice, at 1 and 2 threads (run ids t1, t2)."""
    root = DataRoot.resolve(tmp_path / "two")
    for threads in (1, 2):
        assert warehouse.ingest_run(root, clone_run(recorded_run.run_dir, root, f"t{threads}", threads=threads))
    return root


def test_compare_a_b_selects_through_compare_selected(two_runs, monkeypatch):
    wh = Warehouse.at(two_runs)
    c = compare.compare_selected(wh, {"device": "host", "threads": 1}, {}, {"run": "t2"})
    assert (c.a.run_id, c.b.run_id) == ("t1", "t2")  # a side naming its run ignores the common filters
    with pytest.raises(WarehouseError, match=r"run B \(--b\)"):
        compare.compare_selected(wh, {"threads": 3}, {"run": "t1"}, {}, which=("run A (--a)", "run B (--b)"))

    seen = []
    real = compare.compare_selected
    monkeypatch.setattr(compare, "compare_selected", lambda *a, **k: seen.append(a[1:4]) or real(*a, **k))
    argv = ["compare", "--device", "host", "--a", "threads=1", "--b", "run=t2", "--no-files", "--json"]
    out = json.loads(_cli(*argv, "--home", str(two_runs.path)))
    assert seen == [({"model": "tiny_seg", "dtype": "fp32", "device": "host"}, {"threads": 1}, {"run": "t2"})]
    assert out["runs"] == {"a": "t1", "b": "t2"}


def test_regressions_walks_the_current_runs(two_runs):
    assert sorted(current.current_run_ids(Warehouse.at(two_runs))) == ["t1", "t2"]
    out = json.loads(_cli("regressions", "--json", "--home", str(two_runs.path)))
    assert sorted(out) == ["t1", "t2"]
