"""Numbers that agree: one definition of each share everywhere (warehouse, CLI, report), per-instance
operator rows, and module attribution cross-checked against ExecuTorch's Inspector on the same
trace. One real host run of tiny_seg fp32 (the session's `host_run`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from kit.core.home import DataRoot
from kit.report import builder
from kit.store import queries
from kit.store.ingest import ingest_run
from kit.store.warehouse import Warehouse
from kit.trace import modules
from kit.trace.program import ProgramMap

warnings.filterwarnings("ignore")


@pytest.fixture(scope="module")
def numbers_root(tmp_path_factory, host_run) -> DataRoot:
    """A data root holding only the session's host run: other tests' runs of the same variant in the
    session root must not decide which run the report shows."""
    root = DataRoot.resolve(tmp_path_factory.mktemp("numbers-home"))
    shutil.copytree(host_run.run_dir, root.runs / host_run.run_dir.name)
    ingest_run(root, root.runs / host_run.run_dir.name)
    return root


@pytest.fixture(scope="module")
def stored(numbers_root, host_run):
    return Warehouse.at(numbers_root), host_run.record.run_id


def test_module_totals_reproduce_inspector_on_the_same_trace(host_run, exports):
    from executorch.devtools import Inspector

    pmap = ProgramMap.load(host_run.run_dir)
    etdump = host_run.run_dir / "etdump.etdp"
    inspector = Inspector(etdump_path=str(etdump), etrecord=str(exports["fp32"].etrecord))
    for module in ("stem_norm", "stem", "attn", "attn.norm", "enc1", "head"):
        theirs = inspector.find_total_for_module(module)
        assert theirs > 0, module
        assert modules.inspector_total(etdump, pmap, module) == pytest.approx(theirs, rel=1e-9), module


def test_every_operator_event_has_one_module_and_module_totals_add_up(stored, host_run):
    wh, run_id = stored
    ev = wh.query("SELECT iteration, module, duration_ms FROM op_events WHERE run_id = ?", [run_id])
    assert len(ev) and (ev.module != "").all(), ev[ev.module == ""]
    assert {"stem_norm (GroupNorm)", "attn.norm (LayerNorm)"} <= set(ev.module)
    # Each operator counted once: per iteration, the modules' sums are the operators' sum.
    per_module = ev.groupby(["iteration", "module"]).duration_ms.sum().groupby("iteration").sum()
    assert np.allclose(per_module, ev.groupby("iteration").duration_ms.sum())
    totals = queries.run(wh, "module-totals", {"variant": host_run.record.variant, "target": "host.sme2-off"})
    norm = totals[totals.module == "stem_norm (GroupNorm)"].iloc[0]
    per_it = ev[ev.module == "stem_norm (GroupNorm)"].groupby("iteration").duration_ms.sum()
    assert norm.median_ms == pytest.approx(round(float(np.median(per_it)), 4))


def test_operator_instances_have_percentiles(stored):
    wh, run_id = stored
    inst = wh.sql(f"SELECT * FROM op_instances WHERE run_id = '{run_id}' ORDER BY seq")
    ev = wh.query("SELECT iteration, seq, duration_ms FROM op_events WHERE run_id = ?", [run_id])
    assert len(inst) == ev.seq.nunique() and (inst.iterations == ev.iteration.nunique()).all()
    first = ev[ev.seq == inst.seq.iloc[0]].duration_ms
    assert inst.p50_ms.iloc[0] == pytest.approx(float(np.median(first)))
    ulp = 1e-12  # quantile_cont interpolates between equal neighbours with a rounding error of an ulp
    bad = inst[(inst.p10_ms > inst.p50_ms + ulp) | (inst.p50_ms > inst.p90_ms + ulp)]
    assert bad.empty, bad[["seq", "op_type", "iterations", "p10_ms", "p50_ms", "p90_ms"]].to_string() + repr(
        [ev[ev.seq == s].duration_ms.tolist() for s in bad.seq]
    )
    convs = inst[inst.op_type.str.startswith("Convolution")]
    assert convs.event_name.str.contains(r"#\d+$").all() and len(convs) >= 2  # each instance its own row


def test_one_share_definition_in_warehouse_cli_and_report(stored, numbers_root, host_run):
    """A category's share of Method::execute is its median ms / Method::execute's median ms, and the
    warehouse, `sme2 analyze --json` and the report show the same number."""
    wh, run_id = stored
    run = wh.query("SELECT execute_median_ms, variant FROM runs WHERE run_id = ?", [run_id]).iloc[0]
    cats = wh.query(
        "SELECT category, median_ms, share_of_execute FROM category_stats WHERE run_id = ? AND scheme = 'blog'",
        [run_id],
    )
    assert np.allclose(cats.share_of_execute, cats.median_ms / run.execute_median_ms)
    ops = wh.query("SELECT op_type, median_ms, share_of_execute FROM op_stats WHERE run_id = ?", [run_id])
    assert np.allclose(ops.share_of_execute, ops.median_ms / run.execute_median_ms)

    cli = subprocess.run(
        [sys.executable, "-m", "kit.cli", "analyze", str(host_run.run_dir), "--json", "--home", str(numbers_root.path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    shown = {
        c["category"]: c["share_of_execute"] for c in json.loads(cli.stdout)["categories"] if c["scheme"] == "blog"
    }
    for c in cats.itertuples():
        assert shown[c.category] == pytest.approx(c.share_of_execute, abs=1e-12)

    report = builder.build(numbers_root, run.variant).markdown.read_text()
    biggest = cats.sort_values("median_ms").iloc[-1]
    assert f"{100 * biggest.share_of_execute:.1f}%" in report, (biggest.category, report[:2000])
    # Shares are percentages in every table (no fraction column beside them), small times keep
    # their digits (no 0.000).
    assert "share_of_execute" not in report and "| 0.000 |" not in report
