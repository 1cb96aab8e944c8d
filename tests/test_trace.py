"""ETDump ingestion on a real trace (the recorded run in tests/data), and on traces that are
broken or belong to another program."""

import re
from pathlib import Path

import pandas as pd
import pytest

from kit.core.errors import TraceError
from kit.trace import etdump
from kit.trace.program import ProgramMap
from tests.conftest import DATA
from tests.etdump_reference import ingest_reference


def test_trace_has_delegate_internal_operator_events(recorded_run):
    tr = etdump.ingest(recorded_run.run_dir / "etdump.etdp", ProgramMap.load(recorded_run.run_dir), warmup=1)
    n = recorded_run.record.iterations
    ops = tr.operators
    assert n >= 3 and tr.iterations == n and tr.warmup_dropped == 1
    assert set(ops.iteration) == set(range(n))
    delegated = ops[ops.delegated]
    assert delegated.op_type.str.startswith("Convolution (NHWC, F32)").any()
    assert delegated.op_type.str.startswith("Transpose (ND").any()
    assert not delegated.op_type.str.contains("#").any()  # counters stripped
    portable = set(ops[~ops.delegated].op_type)
    assert {"aten::native_group_norm.out", "aten::native_layer_norm.out"} <= portable
    # Method::execute and DELEGATE_CALL rows are kept apart from operator rows.
    assert (tr.rows.row_kind == "method").sum() == n
    assert "DELEGATE_CALL" not in set(ops.op_type) and "Method::execute" not in set(ops.op_type)
    # Each DELEGATE_CALL contains its operators: their time never exceeds the call's.
    first = tr.rows[tr.rows.iteration == 0]
    for instr, call in first[first.row_kind == "delegate_call"].groupby("instruction_id"):
        inner = first[(first.row_kind == "operator") & (first.instruction_id == instr)].duration_ms.sum()
        assert inner <= call.duration_ms.sum() + 1e-3


def test_fresh_trace_reads_like_the_recorded_one(host_run, recorded_run):
    """The recorded trace is not stale: a fresh run of this checkout sees the same operators."""
    fresh, recorded = host_run.trace.operators, recorded_run.trace.operators
    assert set(fresh.op_type) == set(recorded.op_type)
    assert len(fresh[fresh.iteration == 0]) == len(recorded[recorded.iteration == 0])


def test_truncated_etdump_is_a_clear_error(recorded_run, tmp_path):
    bad = tmp_path / "cut.etdp"
    bad.write_bytes((recorded_run.run_dir / "etdump.etdp").read_bytes()[:-100])
    with pytest.raises(TraceError, match="truncated"):
        etdump.ingest(bad)


def test_garbage_is_not_an_etdump(tmp_path):
    bad = tmp_path / "x.etdp"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(TraceError, match="not an ETDump"):
        etdump.ingest(bad)


def test_corrupt_body_is_a_clear_error(recorded_run, tmp_path):
    data = bytearray((recorded_run.run_dir / "etdump.etdp").read_bytes())
    data[12:20] = b"\xff" * 8  # root table offsets point outside the file
    bad = tmp_path / "corrupt.etdp"
    bad.write_bytes(bytes(data))
    with pytest.raises(TraceError):
        etdump.ingest(bad)


def test_etdump_of_another_program_is_detected(recorded_run):
    """The fp32 trace read with the int8 program's map: Inspector accepts this, we must not."""
    int8_map = ProgramMap.load(DATA / "tiny_seg-int8")
    with pytest.raises(TraceError, match="does not belong to this program"):
        etdump.ingest(recorded_run.run_dir / "etdump.etdp", int8_map, warmup=1)


@pytest.mark.slow
def test_etdump_of_another_program_is_detected_with_a_fresh_export(host_run, exports):
    with pytest.raises(TraceError, match="does not belong to this program"):
        etdump.ingest(host_run.run_dir / "etdump.etdp", exports["int8"].program_map, warmup=3)


def test_warmups_must_leave_iterations(recorded_run):
    with pytest.raises(TraceError, match="all of them warmups"):
        etdump.ingest(recorded_run.run_dir / "etdump.etdp", warmup=recorded_run.record.iterations + 1)


def test_kernel_hint_names_kleidiai_packed_types():
    assert etdump.kernel_hint("Convolution (NHWC, PF32) IGEMM") == "kleidiai:PF32"
    assert etdump.kernel_hint("Fully Connected (NC, PQS8, QC8W) GEMM") == "kleidiai:PQS8"
    assert etdump.kernel_hint("Convolution (NHWC, QC8) IGEMM") == ""
    assert etdump.kernel_hint("Transpose (ND, X32)") == ""
    assert etdump.op_type_of("Transpose (ND, X32) #12") == "Transpose (ND, X32)"


# ---------------------------------------------------------------- the vectorized reader vs the reference

ETDUMP_DATA = Path(__file__).parent / "data" / "etdump_tiny_seg_fp32"


def _same_trace(fast, ref):
    pd.testing.assert_frame_equal(fast.rows, ref.rows, check_exact=True)
    assert (fast.iterations, fast.warmup_dropped, fast.init_ms) == (ref.iterations, ref.warmup_dropped, ref.init_ms)
    assert fast.warmup_method_ms == ref.warmup_method_ms


@pytest.mark.parametrize("with_program", [True, False])
def test_fast_reader_equals_the_reference_on_real_traces(host_run, with_program):
    for folder, warmup in ((host_run.run_dir, 3), (host_run.run_dir, 0), (ETDUMP_DATA, 0), (ETDUMP_DATA, 1)):
        pmap = ProgramMap.load(folder) if with_program else None
        path = folder / "etdump.etdp"
        _same_trace(etdump.ingest(path, pmap, warmup=warmup), ingest_reference(path, pmap, warmup=warmup))


def test_fast_reader_names_the_same_program_mismatch_as_the_reference(recorded_run):
    path, int8_map = recorded_run.run_dir / "etdump.etdp", ProgramMap.load(DATA / "tiny_seg-int8")
    with pytest.raises(TraceError) as fast:
        etdump.ingest(path, int8_map, warmup=1)
    with pytest.raises(TraceError) as ref:
        ingest_reference(path, int8_map, warmup=1)
    assert fast.value.message == ref.value.message


def test_reader_field_slots_follow_executorchs_etdump_schema():
    """The field numbers the reader uses are the vtable slots of etdump_schema_flatcc.fbs as the
    installed executorch ships it: a schema change upstream fails here, not silently in a trace."""
    import executorch

    package = Path(next(iter(executorch.__path__)))  # a namespace package: no __file__
    fbs = (package / "devtools" / "etdump" / "etdump_schema_flatcc.fbs").read_text()
    for table, fields in (
        ("ETDump", etdump.ETDumpFields),
        ("RunData", etdump.RunDataFields),
        ("Event", etdump.EventFields),
        ("ProfileEvent", etdump.ProfileEventFields),
    ):
        body = re.search(rf"table {table} {{(.*?)}}", fbs, re.S).group(1)
        declared = re.findall(r"^\s*(\w+)\s*:", re.sub(r"//.*", "", body), re.M)
        ours = {name: slot for name, slot in vars(fields).items() if not name.startswith("_")}
        assert ours and all(declared[slot] == name for name, slot in ours.items()), (table, declared, ours)


def test_execute_breakdown_accounts_for_method_execute(host_run):
    """Operators + delegate overhead + dispatch is Method::execute (medians: nearly), and the
    breakdown is reported with the run."""
    b = host_run.analysis.execute_breakdown
    assert b["delegate_calls"] >= 1 and b["instructions"] > b["delegate_calls"]
    assert b["delegate_overhead_ms"] >= 0 and b["dispatch_ms"] >= 0
    parts = b["operators_ms"] + b["delegate_overhead_ms"] + b["dispatch_ms"]
    assert parts == pytest.approx(b["execute_ms"], rel=0.1)
    assert host_run.record.results["execute_breakdown"] == b
