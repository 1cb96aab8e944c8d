"""Instruction counts per ETDump event (kit.counts): the plugin's file, matching its clock reads to
the trace, the cost model, the warehouse's op_counts, the zero-noise regression gate; and, with the
emulated pair (`qemu`), the plugin-capable QEMU, determinism and what SME2 changes.

The fast tests read two real counting runs recorded in tests/data/counts-tiny_seg-fp32 (tiny_seg
fp32 small on armv9-qemu.sme2-on and .sme2-off; tests/data/make_counted_runs.py)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit.analysis import compare, regress
from kit.core.errors import Sme2Error, TargetError, TraceError
from kit.core.home import DataRoot
from kit.counts import attribution, costmodel, plugin_log, qemu_build
from kit.counts import table as count_table
from kit.devices import inventory
from kit.devices.transports.qemu import QemuTransport
from kit.export import exporter
from kit.profile import session
from kit.runners import recipes
from kit.stats import categories
from kit.store.ingest import ingest_run
from kit.store.warehouse import Warehouse
from kit.trace import etdump
from kit.trace.program import ProgramMap
from tests.runfolder import clone_run

COUNTED = Path(__file__).resolve().parent / "data" / "counts-tiny_seg-fp32"
RECORDED_HOST = Path(__file__).resolve().parent / "data" / "tiny_seg-fp32-host"


def recorded(side: str) -> tuple[etdump.Trace, plugin_log.ClockLog]:
    pmap = ProgramMap.load(COUNTED)
    trace = etdump.ingest(COUNTED / side / "etdump.etdp", pmap, warmup=count_table.WARMUP)
    return trace, plugin_log.read(COUNTED / side / count_table.PLUGIN_FILE)


@pytest.fixture(scope="module")
def attributed() -> dict[str, attribution.Attribution]:
    return {side: attribution.attribute(*recorded(side)) for side in ("sme2-on", "sme2-off")}


# ---------------------------------------------------------------- the plugin's file


def test_counts_file_parses_and_foreign_files_are_refused(tmp_path):
    log = plugin_log.read(COUNTED / "sme2-on" / count_table.PLUGIN_FILE)
    assert len(log) > 100 and log.counts.shape == (len(log), len(plugin_log.CLASSES))
    assert (np.diff(log.of(0).counts, axis=0) >= 0).all(), "counters only grow"
    assert (log.streaming <= log.counts).all()
    text = (COUNTED / "sme2-on" / count_table.PLUGIN_FILE).read_text()
    cases = {
        "truncated": "\n".join(line for line in text.splitlines() if not line.startswith("T ")),
        "foreign": "hello\n" + text,
        "malformed": text.replace("\nR 0 1 ", "\nR 0 x ", 1),
    }
    for name, body in cases.items():
        (tmp_path / name).write_text(body)
        with pytest.raises(TraceError, match=name if name == "malformed" else str(tmp_path / name)):
            plugin_log.read(tmp_path / name)


# ---------------------------------------------------------------- attribution


def test_every_event_gets_counts_that_add_up(attributed):
    for side, a in attributed.items():
        ev = a.events
        assert (ev[attribution.COUNT_COLUMNS] >= 0).all().all(), f"{side}: an event was left unmatched"
        assert (ev.instructions == ev[list(plugin_log.CLASSES)].sum(axis=1)).all()
        assert (ev.sme_instructions + ev.simd_instructions + ev.scalar_instructions == ev.instructions).all()
        # The operators directly under Method::execute explain nearly all of it (the rest: interpreter
        # and event tracer between them); at this small size XNNPACK's own per-call work is visible.
        assert 0.97 <= a.checks["top_level_share_of_execute"] <= 1.0, a.checks
        assert 0.80 <= a.checks["operators_share_of_execute"] <= a.checks["top_level_share_of_execute"]
        for it, g in ev.groupby("iteration"):
            method = g[g.row_kind == "method"].instructions.iloc[0]
            assert g[g.row_kind == "operator"].instructions.sum() <= method, f"{side} iteration {it}"


def test_sme2_on_retires_sme_instructions_in_conv_and_gemm_only(attributed):
    rules = categories.load_rules()
    on = categories.label(attributed["sme2-on"].events.query("row_kind == 'operator'"), rules)
    off = attributed["sme2-off"].events
    assert (off.sme_instructions == 0).all(), "SME2 off: no instruction may run in streaming mode or be SME"
    compute = on[on.category.isin(["Convolution", "GEMM"])]
    assert len(compute) and (compute.sme_instructions > 0).all(), compute[["op_type", "sme_instructions"]]
    assert (compute.sme_outer > 0).all(), "SME2's matrix kernels retire outer products"
    assert (on[on.category == "Data Movement"].sme_instructions == 0).all()

    # The same Data Movement work on both sides: identical counts (deterministic, no SME2 kernel).
    def dm(ev):
        ops = categories.label(ev.query("row_kind == 'operator'"), rules)
        return ops[ops.category == "Data Movement"].instructions.sum()

    assert dm(attributed["sme2-on"].events) == dm(attributed["sme2-off"].events)


def test_counts_of_another_run_are_refused():
    trace, _ = recorded("sme2-on")
    _, other = recorded("sme2-off")
    with pytest.raises(TraceError, match="do not match the trace"):
        attribution.attribute(trace, other)


def test_delegate_operator_ends_known_answers():
    # [xnn start, op0 end, op1 end, op2 end] with gaps of 5, 7 and 2 microseconds
    reads = np.array([0, 5_300, 12_900, 14_100])
    assert attribution._delegate_ends(reads, np.array([5, 7, 1])).tolist() == [0, 1, 2, 3]
    # an extra read between XNNPACK's start and the first operator's end (another XNNPACK version)
    reads = np.array([0, 400, 5_300, 12_900, 14_100])
    assert attribution._delegate_ends(reads, np.array([5, 7, 1])).tolist() == [0, 2, 3, 4]
    # a node of two operator objects: one duration, the sum of two read gaps cut to microseconds
    reads = np.array([0, 5_300, 105_900, 200_950, 202_100])
    assert attribution._delegate_ends(reads, np.array([5, 195, 1])).tolist() == [0, 1, 3, 4]
    # durations no run of reads explains
    assert attribution._delegate_ends(np.array([0, 5_300, 12_900]), np.array([9, 9])) is None


# ---------------------------------------------------------------- the cost model


def test_cost_model_known_answer_and_its_errors(tmp_path):
    lines = ['name = "toy"', "[per_cycle]"]
    lines += [f"{c} = {{ value = 2, source = 'test' }}" for c in plugin_log.CLASSES]
    lines += ["[streaming_per_cycle]", "sme_outer = 4", "[memory]", "bytes_per_cycle = 8"]
    (tmp_path / "toy.toml").write_text("\n".join(lines))
    model = costmodel.load(tmp_path / "toy.toml")
    zero = {c: 0 for c in attribution.COUNT_COLUMNS}
    rows = pd.DataFrame(
        [
            {**zero, "int": 100, "sme_outer": 40, "streaming_sme_outer": 40},  # 100/2 + 40/4 = 60 compute
            {**zero, "int": 10, "bytes_loaded": 800, "bytes_stored": 0},  # 5 compute, 100 memory
        ]
    )
    est = costmodel.estimate(rows, model)
    assert est.est_compute_cycles.tolist() == [60, 5] and est.est_memory_cycles.tolist() == [0, 100]
    assert est.est_cycles.tolist() == [60, 100]
    assert model.streaming_per_cycle["int"] == 2, "classes a model leaves out of streaming mode keep their rate"
    (tmp_path / "bad.toml").write_text("\n".join(lines).replace("sme_outer = 4", "sme_outer = 0"))
    with pytest.raises(Sme2Error, match=r"\[streaming_per_cycle\] sme_outer must be a positive number"):
        costmodel.load(tmp_path / "bad.toml")
    default = costmodel.load()
    assert all(default.per_cycle[c] > 0 for c in plugin_log.CLASSES) and default.name == "apple-m4-p-core"


def test_default_cost_model_cites_a_source_for_every_number():
    doc = tomllib.loads(costmodel.DEFAULT.read_text())
    for table in ("per_cycle", "streaming_per_cycle", "memory"):
        for key, entry in doc[table].items():
            assert isinstance(entry, dict) and entry.get("source", "").strip(), f"[{table}] {key} has no source"


# ---------------------------------------------------------------- the warehouse and the gate


def counted_folder(root: DataRoot, name: str, side: str, **fields) -> Path:
    """A run folder (the recorded host run's files) carrying the recorded counts of one side."""
    folder = clone_run(RECORDED_HOST, root, name, **fields)
    trace, log = recorded(side)
    table = count_table.build(
        trace, COUNTED / side / count_table.PLUGIN_FILE, categories.load_rules(), costmodel.load()
    )
    count_table.write(folder, table)
    rec = json.loads((folder / "run.json").read_text())
    rec["results"]["counts"] = table.summary
    (folder / "run.json").write_text(json.dumps(rec))
    return folder


def test_op_counts_in_the_warehouse_and_the_zero_noise_gate(tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    a = counted_folder(root, "run-a-on", "sme2-on", started_at="2026-12-01T00:00:00Z")
    b = counted_folder(root, "run-b-on", "sme2-on", started_at="2026-12-02T00:00:00Z")
    c = counted_folder(root, "run-c-off", "sme2-off", started_at="2026-12-03T00:00:00Z")
    for folder in (a, b, c):
        assert ingest_run(root, folder)
    assert not ingest_run(root, a), "ingesting twice adds nothing"
    wh = Warehouse.at(root)
    stored = count_table.read(a)
    first = stored[(stored.iteration == 0) & (stored.row_kind == "operator")]
    view = wh.sql("SELECT op_type, instructions, est_cycles FROM op_counts WHERE run_id = 'run-a-on'")
    assert view.instructions.sum() == first.instructions.sum()
    assert view.est_cycles.sum() == pytest.approx(first.est_cycles.sum())
    assert len(wh.sql("SELECT * FROM op_event_counts WHERE run_id = 'run-a-on'")) == len(stored)

    assert regress.count_diff(wh, "run-b-on", "run-a-on").empty, "the same counts: no difference"
    gate = regress.count_gate(wh, "run-b-on")  # against the previous counted run of its key
    assert gate.passed and "identical" in gate.message
    diff = regress.count_diff(wh, "run-c-off", "run-a-on")
    assert not diff.empty
    pf32 = diff[diff.op_type.str.contains("PF32") & (diff.counted == "sme_outer")]
    assert len(pf32) and (pf32.new == 0).all() and (pf32.baseline > 0).all()
    finding = regress.check_counts(wh, "run-c-off", "run-a-on", "key")
    assert not finding.passed and "PF32" in finding.message


def test_count_categories_of_an_sme2_pair(tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    for name, side in (("pair-off", "sme2-off"), ("pair-on", "sme2-on")):
        ingest_run(root, counted_folder(root, name, side))
    wh = Warehouse.at(root)
    off, on = (compare.Side.of(r) for _, r in wh.query("SELECT * FROM runs ORDER BY run_id").iterrows())
    table, execute = compare.count_categories(wh, off, on)
    by = table.set_index("category")
    assert by.loc["Convolution", "est_cycles_ratio"] > 1 and by.loc["GEMM", "est_cycles_ratio"] > 1
    assert by.loc["Data Movement", "instructions_ratio"] == pytest.approx(1.0)
    assert by.loc["Data Movement", "share_b"] > by.loc["Data Movement", "share_a"], "data movement's share rises"
    assert execute["a_instructions"] > execute["b_instructions"] > 0
    assert table.share_a.sum() == pytest.approx(1.0) and table.share_b.sum() == pytest.approx(1.0)


def test_counting_transport_refuses_paths_qemu_would_split(tmp_path):
    t = QemuTransport("armv9-qemu", qemu="/q", sme2=True)
    tools = qemu_build.CountingTools(Path("/tools/qemu"), Path("/tools/lib,evil=1.so"), {})
    with pytest.raises(TargetError, match="comma"):
        t.counting(tools, tmp_path / "counts.txt")
    ok = t.counting(qemu_build.CountingTools(Path("/tools/qemu"), Path("/tools/lib.so"), {}), tmp_path / "c.txt")
    argv = ok.wrap(["/runner", "--model", "m.pte"])
    assert argv[:1] == ["/tools/qemu"] and ["-plugin", f"/tools/lib.so,out={tmp_path / 'c.txt'}"] == argv[5:7]
    assert t.wrap(["/runner"])[0] == "/q", "the plain transport is unchanged"


# ---------------------------------------------------------------- with the emulated pair


@pytest.mark.qemu
def test_setup_counts_proves_the_plugin(counting_setup, home):
    probe = counting_setup.manifest["probe"]
    n = qemu_build.PROBE_LOOPS
    assert probe["counts"]["sme_outer"] == 2 * n and probe["streaming"]["sme_outer"] == 2 * n
    assert probe["counts"]["sme_mem"] == n and probe["streaming"]["system"] == n  # each SMSTOP, in streaming mode
    again = qemu_build.setup_counting(home)
    assert again.qemu == counting_setup.qemu and again.manifest["build"] == counting_setup.manifest["build"]


@pytest.mark.qemu
@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_emulated_pair_is_counted_and_sme2_shows_in_conv_and_gemm(qemu_runs, dtype):
    for sme2 in (True, False):
        r = qemu_runs[(dtype, sme2)]
        table = count_table.read(r.run_dir)
        assert table is not None, "a counted run keeps op_counts.csv"
        ops = table[(table.row_kind == "operator") & (table.iteration == 0)]
        compute = ops[ops.category.isin(["Convolution", "GEMM"])]
        if sme2:
            assert (compute.sme_instructions > 0).all(), compute[["op_type", "sme_instructions"]]
        else:
            assert (table.sme_instructions == 0).all()
        assert r.record.results["counts"]["cost_model"].startswith("apple-m4-p-core")
        checks = r.record.results["counts"]["checks"]
        assert 0.8 <= checks["delegate_operators_share"] <= checks["operators_share_of_execute"] <= 1.0, checks


@pytest.mark.qemu
def test_two_counting_runs_give_identical_counts(qemu_runs, home, exports):
    """Determinism: the same program on the same emulated target, counted again in another process,
    retires the same instructions in every event, bit for bit."""

    first = qemu_runs[("fp32", True)]
    resolved = inventory.resolve("armv9-qemu.sme2-on", home)
    again = session.run_session(home, exports["fp32"], resolved, session.Measurement(threads=1, iterations=2, warmup=1, binary=recipes.runner_for(resolved, home, "native"), counts=True))  # fmt: skip
    a, b = count_table.read(first.run_dir), count_table.read(again.run_dir)
    cols = [*attribution.KEY_COLUMNS, *attribution.COUNT_COLUMNS]
    pd.testing.assert_frame_equal(a[cols].reset_index(drop=True), b[cols].reset_index(drop=True), check_exact=True)
    shutil.rmtree(again.run_dir)


# Nightly: a full-size export and counting run (~80 s cold). Every push checks the same shares at the
# small size, where the runtime's fixed cost outside the operators is a larger part (above 80%).
@pytest.mark.qemu
@pytest.mark.nightly
def test_counts_add_up_at_full_size(counting_setup, home, tiny):
    """At tiny_seg's full size the operator events hold all but <1% of Method::execute's instructions."""

    exp = exporter.export_variant(tiny, "fp32", "full", home)
    resolved = inventory.resolve("armv9-qemu.sme2-on", home)
    r = session.run_session(home, exp, resolved, session.Measurement(threads=1, iterations=2, warmup=1, binary=recipes.runner_for(resolved, home, "native"), counts=True))  # fmt: skip
    checks = r.record.results["counts"]["checks"]
    assert 0.99 <= checks["operators_share_of_execute"] <= 1.0, checks
    assert 0.99 <= checks["delegate_operators_share"] <= 1.0, checks
