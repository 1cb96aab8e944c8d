"""The front ends (the `sme2` command line, the MCP tools, the Dagster assets) parse input and
render output; what they show comes from one kit operation each: a run's summary from
kit.profile.runsummary.summarize, two runs chosen by selectors from
kit.analysis.compare.compare_selected, a variant's key from kit.core.names.Variant. Fast: the
recorded run, no profiling."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from kit import pipeline
from kit.agent import tools
from kit.analysis import compare
from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.pipeline import PartitionRuns
from kit.profile import runsummary
from kit.store import current, ingest
from kit.store.warehouse import Warehouse
from sme2_assets.assets import profiling as profiling_assets
from sme2_assets.partitions import MODEL, TARGET
from sme2_assets.resources import Sme2
from tests.clirun import sme2_here
from tests.runfolder import clone_run


def _cli(*argv: str) -> str:
    return sme2_here(*argv).stdout


def test_summary_is_json_native_and_the_analysis_numbers(recorded_run):
    s = runsummary.summarize(recorded_run)
    a = recorded_run.analysis
    assert s["run_id"] == recorded_run.record.run_id and s["e2e_median_ms"] == a.e2e["median_ms"]
    assert s["coverage"] == a.coverage and s["execute_median_ms"] == a.execute["median_ms"]
    shares = {c["category"]: c["share_of_execute"] for c in s["categories"]}
    assert shares == {r.category: r.share_of_execute for r in a.category_table("blog").itertuples()}
    assert len(s["top_operators"]) == min(10, len(a.op_stats)) and s["instructions"] is None
    assert json.loads(json.dumps(s, allow_nan=False)) == s  # no numpy values, no NaN


def test_cli_mcp_and_asset_show_one_summary_of_a_run(recorded_run, tmp_path, monkeypatch):
    """`sme2 profile --json`, the MCP `profile` tool and the `device_trace` asset's metadata (and
    the category shares `category_breakdown` reads back from the warehouse) agree on one run."""
    root = DataRoot.resolve(tmp_path / "home")
    monkeypatch.setenv("SME2_HOME", str(root.path))
    monkeypatch.setattr(pipeline, "profile_and_store", lambda plan, root, progress=None: [recorded_run])
    monkeypatch.setattr(profiling_assets, "profile_partition", lambda *a, **k: PartitionRuns([recorded_run]))
    expected = runsummary.summarize(recorded_run)

    (cli,) = json.loads(_cli("profile", "--json", "--home", str(root.path)))
    assert {k: cli[k] for k in expected} == expected and cli["run_dir"] == str(recorded_run.run_dir)

    (mcp,) = next(t for t in tools.make_tools(root) if t.__name__ == "profile")()["runs"]
    assert mcp == expected

    rec = recorded_run.record
    key = dg.MultiPartitionKey({"model": rec.variant, "target": rec.target})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(MODEL.name, [rec.variant])
        instance.add_dynamic_partitions(TARGET.name, [rec.target])
        done = dg.materialize(
            [profiling_assets.device_trace, profiling_assets.warehouse_rows, profiling_assets.category_breakdown],
            partition_key=key,
            instance=instance,
            resources={"sme2": Sme2(home=str(root.path))},
        )
    assert done.success
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in done.get_asset_materialization_events()}
    trace, cats = meta["device_trace"], meta["category_breakdown"]
    (row,) = [r.data for r in trace["runs"].records]
    assert row["run_id"] == expected["run_id"] and row["e2e_median_ms"] == round(expected["e2e_median_ms"], 4)
    assert trace["e2e_median_ms"].value == round(expected["e2e_median_ms"], 4)
    for c in expected["categories"]:
        shown = cats[f"share_{c['category'].lower().replace(' ', '_')}"].value
        assert shown == round(c["share_of_execute"], 4), c["category"]


@pytest.fixture
def two_runs(recorded_run, tmp_path) -> DataRoot:
    """The recorded host run stored twice, at 1 and 2 threads (run ids t1, t2)."""
    root = DataRoot.resolve(tmp_path / "two")
    for threads in (1, 2):
        assert ingest.ingest_run(root, clone_run(recorded_run.run_dir, root, f"t{threads}", threads=threads))
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
