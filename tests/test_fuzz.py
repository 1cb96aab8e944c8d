"""Fuzzing the readers of files that come from disk (hypothesis, bounded time).

- The ETDump reader (kit.trace.ingest) fed a real small ETDump (tests/data/etdump_tiny_seg_fp32,
  2 iterations of tiny_seg fp32) with truncations, bit flips, overwritten offsets and spliced
  garbage: it returns a Trace or raises TraceError naming the file; never another exception,
  never a hang.
- The run-folder reader (RunRecord.load, profile.load_run) and warehouse ingestion fed a real run
  folder with mutated run.json / timing.json / etdump.json / program_map.json / CSVs: a clean
  Sme2Error naming the file, and no partial rows in a real warehouse (counted before and after);
  when a mutated run is accepted, its rows are whole.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import signal
import struct
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kit.core.errors import Sme2Error, TraceError
from kit.core.home import DataRoot
from kit.store import ingest
from kit.store.schema import TABLES
from kit.store.warehouse import Warehouse
from kit.trace import etdump
from kit.trace.program import ProgramMap
from tests.etdump_reference import ingest_reference
from tests.runfolder import clone_run, real_run_folder

pytestmark = pytest.mark.slow  # hypothesis over the ETDump and run-folder readers (over a minute)

DATA = Path(__file__).parent / "data" / "etdump_tiny_seg_fp32"
ETDUMP = (DATA / "etdump.etdp").read_bytes()
PER_CALL_LIMIT_S = 10  # one parse of a ~10 KB file takes milliseconds: more is a hang

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the repo
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_RUNS = settings(FUZZ, max_examples=60)  # each example may ingest a run into DuckDB (~0.3 s)


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (instead of hanging the suite) when the body runs longer than `seconds`."""

    def expired(signum, frame):
        raise TimeoutError(f"no answer within {seconds}s: the reader hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- ETDump bytes

U32_VALUES = st.sampled_from([0, 1, 3, 4, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, len(ETDUMP)])

truncate = st.builds(lambda n: ETDUMP[:n], st.integers(0, len(ETDUMP)))


@st.composite
def bit_flips(draw):
    buf = bytearray(ETDUMP)
    for pos, bit in draw(st.lists(st.tuples(st.integers(0, len(buf) - 1), st.integers(0, 7)), min_size=1, max_size=16)):
        buf[pos] ^= 1 << bit
    return bytes(buf)


@st.composite
def overwritten_offsets(draw):
    """Flatbuffer offsets, vtable sizes and vector lengths are u32/u16/i32: set some to extremes."""
    buf = bytearray(ETDUMP)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, (len(buf) - 4) // 4)) * 4
        value = draw(st.one_of(U32_VALUES, st.integers(0, 0xFFFFFFFF)))
        buf[pos : pos + 4] = struct.pack("<I", value)
    return bytes(buf)


@st.composite
def spliced(draw):
    pos = draw(st.integers(0, len(ETDUMP)))
    cut = draw(st.integers(0, 256))
    return ETDUMP[:pos] + draw(st.binary(max_size=256)) + ETDUMP[pos + cut :]


MUTATED_ETDUMPS = st.one_of(truncate, bit_flips(), overwritten_offsets(), spliced(), st.binary(max_size=64))


@pytest.fixture(scope="module")
def program_map():
    return ProgramMap.load(DATA)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-etdump")


def test_the_checked_in_etdump_parses(program_map):
    tr = etdump.ingest(DATA / "etdump.etdp", program_map)
    assert tr.iterations == 2 and (tr.rows.row_kind == "operator").any()


@FUZZ
@given(data=MUTATED_ETDUMPS, keep_size_header=st.booleans(), with_program=st.booleans())
def test_mutated_etdump_is_a_trace_or_a_trace_error(scratch, program_map, data, keep_size_header, with_program):
    if keep_size_header and len(data) >= 4:
        # A consistent size prefix gets past the first check, so the flatbuffer walk is fuzzed too.
        data = struct.pack("<I", len(data) - 4) + data[4:]
    path = scratch / "mutated.etdp"
    path.write_bytes(data)
    try:
        with time_limit(PER_CALL_LIMIT_S):
            tr = etdump.ingest(path, program_map if with_program else None)
    except TraceError as e:
        assert str(path) in e.message
        return
    assert list(tr.rows.columns) == etdump.COLUMNS and tr.iterations >= 1


@FUZZ
@given(data=MUTATED_ETDUMPS, keep_size_header=st.booleans(), with_program=st.booleans())
def test_mutated_etdump_never_reads_differently_from_the_reference(
    scratch, program_map, data, keep_size_header, with_program
):
    """The vectorized reader against the per-event one it replaced (tests/etdump_reference.py):
    whatever it accepts, the reference accepts with identical rows; whatever the reference refuses,
    it refuses. It may refuse more: it checks bounds the reference did not (negative offsets that
    Python's struct read from the end of the file, strings running past the end that slicing cut
    short, vtables past the end)."""
    if keep_size_header and len(data) >= 4:
        data = struct.pack("<I", len(data) - 4) + data[4:]
    path = scratch / "mutated-vs-reference.etdp"
    path.write_bytes(data)
    program = program_map if with_program else None

    def read(reader):
        with time_limit(PER_CALL_LIMIT_S):
            try:
                return reader(path, program)
            except TraceError as e:
                return e

    fast, ref = read(etdump.ingest), read(ingest_reference)
    if isinstance(fast, etdump.Trace):
        assert isinstance(ref, etdump.Trace), ref.message
        pd.testing.assert_frame_equal(fast.rows, ref.rows, check_exact=True)
        assert fast.init_ms == ref.init_ms
    elif isinstance(ref, TraceError) and "does not belong" in ref.message and "does not belong" in fast.message:
        assert fast.message == ref.message  # the same first violation, in timeline order


# ---------------------------------------------------------------- run folders into a real warehouse

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["../x", "/etc/passwd", "-oProxyCommand=x", "..", "", "host.sme2-on", "fp32", "NaT", "2026-02-30"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=10,
)
RUN_FIELDS = [
    "run_id", "model", "dtype", "backend", "size", "target", "device", "sme2", "threads", "runner", "iterations",
    "warmup", "emulated", "platform", "transport", "started_at", "finished_at", "versions", "conditions", "results",
    "source", "stem",
]  # fmt: skip


@st.composite
def json_edit(draw, fields: list[str]):
    """(field, value) to set, or (field, DELETE) to remove."""
    field = draw(st.sampled_from(fields) | st.text(max_size=8))
    return field, draw(st.just(DELETE) | JSON_VALUES)


DELETE = object()


@st.composite
def file_mutation(draw):
    """Which file of the run folder to damage, and how."""
    target = draw(
        st.sampled_from(["run.json", "timing.json", "etdump.json", "program_map.json", "robust_stats", "ops_csv"])
    )
    how = draw(st.sampled_from(["edit", "edit", "replace", "truncate", "flip"]))
    if target == "ops_csv" and how in ("edit", "replace"):  # not JSON: any text instead
        return target, "text", draw(st.text(max_size=200))
    if how == "edit":
        fields = {"run.json": RUN_FIELDS, "timing.json": ["latencies_ms", "runner", "load_ms"]}.get(
            target, ["instructions", "pte_sha256", "signature", "load_ms"]
        )
        return target, how, draw(st.lists(json_edit(fields), min_size=1, max_size=3))
    if how == "replace":
        return target, how, draw(JSON_VALUES)
    if how == "truncate":
        return target, how, draw(st.floats(0, 1))
    return target, how, draw(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), min_size=1, max_size=8))


def _damage(path: Path, how: str, arg) -> None:
    if how == "edit":
        doc = json.loads(path.read_text())
        if isinstance(doc, dict):
            for field, value in arg:
                if value is DELETE:
                    doc.pop(field, None)
                else:
                    doc[field] = value
        path.write_text(json.dumps(doc))
    elif how == "replace":
        path.write_text(json.dumps(arg))
    elif how == "text":
        path.write_text(arg)
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * arg)])
    else:
        data = bytearray(path.read_bytes())
        for where, bit in arg:
            if data:
                data[min(int(len(data) * where), len(data) - 1)] ^= 1 << bit
        path.write_bytes(bytes(data))


def _counts(root: DataRoot) -> dict[str, int]:
    with Warehouse.at(root).read() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture(scope="module")
def fuzz_root(home, tmp_path_factory):
    """A real warehouse holding one real run, and the run folder to mutate copies of."""
    src = real_run_folder(home)
    root = DataRoot.resolve(tmp_path_factory.mktemp("fuzz-runs") / "home")
    assert ingest.ingest_run(root, clone_run(src, root, "baseline"))
    return root, src


_serial = itertools.count()


@FUZZ_RUNS
@given(mutation=file_mutation())
def test_mutated_run_folder_is_refused_cleanly_and_leaves_no_partial_rows(fuzz_root, mutation):
    root, src = fuzz_root
    name = f"fuzz-{next(_serial)}"
    run = clone_run(src, root, name)
    target, how, arg = mutation
    stem = json.loads((run / "run.json").read_text())["stem"]
    path = run / {"robust_stats": f"{stem}_robust_stats.json", "ops_csv": f"{stem}_exec_ops_stats.csv"}.get(
        target, target
    )
    _damage(path, how, arg)
    before = _counts(root)
    try:
        with time_limit(60):
            added = ingest.ingest_run(root, run)
    except Sme2Error as e:
        assert str(run) in e.message, e.message  # names the folder's file
        assert _counts(root) == before, "a refused run left rows behind"
        return
    finally:
        shutil.rmtree(run, ignore_errors=True)
    after = _counts(root)
    if not added:  # its (mutated) run id is already in the warehouse: a no-op
        assert after == before
        return
    # Accepted: exactly one whole run.
    assert after["runs"] == before["runs"] + 1
    wh = Warehouse.at(root)
    (row,) = wh.query("SELECT * FROM runs WHERE run_dir = ?", [str(run)]).itertuples()
    for table, column in (("op_events", "n_op_events"), ("latency_samples", "n_samples"), ("op_stats", "n_op_stats")):
        n = wh.query(f"SELECT count(*) AS n FROM {table} WHERE run_id = ?", [row.run_id]).n[0]
        assert n == getattr(row, column), (table, n)


# ---- stored values, report fields, counts files and user SQL (the untrusted-input surfaces)

NAMEISH = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60) | st.sampled_from(
    ["..", ".", "a/b", "../../etc", "zz/../../x", "tiny_seg-fp32", "host.sme2-on", "-rf", "a\x00b", "/abs"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(NAMEISH, min_size=1, max_size=3))
def test_report_paths_never_leave_the_data_root(tmp_path, parts):
    root = DataRoot.resolve(tmp_path / "home")
    try:
        path = root.report_path(*parts)
    except Sme2Error:
        return
    assert root.path in path.resolve().parents


@settings(max_examples=200, deadline=None)
@given(row=st.fixed_dictionaries({"run_id": NAMEISH, "variant": NAMEISH, "target": NAMEISH, "device": NAMEISH}))
def test_stored_rows_with_bad_names_are_skipped(row):
    from kit.core import names
    from kit.store import views

    kept = views.valid_rows(pd.DataFrame([row]))
    if len(kept):  # whatever is kept is a valid name everywhere it can go
        names.file_component("run id", row["run_id"])
        names.Variant.parse(row["variant"])
        names.Target.parse(row["target"])
        names.device_name(row["device"])


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=200))
def test_report_text_never_becomes_markup(value):
    import markdown

    from kit.report import render

    converter = markdown.Markdown(extensions=["tables"])
    converter.preprocessors.deregister("html_block")
    converter.inlinePatterns.deregister("html")
    rendered = converter.convert(render.escape_markdown(f"| col |\n|---|\n| {value} |\n\ntext {value}"))
    tags = {t.lower() for t in __import__("re").findall(r"<\s*([a-zA-Z][a-zA-Z0-9]*)", rendered)}
    assert tags <= {"table", "thead", "tbody", "tr", "th", "td", "p", "code", "em", "strong", "br", "hr", "h1",
                    "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "a", "img"}  # fmt: skip
    assert "<script" not in rendered.lower() and "onerror" not in rendered.lower().replace("onerror</", "")
    assert json.loads(render.script_json({"v": value})) == {"v": value} and "</" not in render.script_json(value)


COUNTS = Path(__file__).parent / "data" / "counts-tiny_seg-fp32" / "sme2-on" / "counts.txt"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_counts_files_are_a_log_or_a_trace_error(tmp_path, data):
    from kit.counts import plugin_log

    lines = COUNTS.read_text().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    kind = data.draw(st.sampled_from(["drop", "garbage", "truncate", "duplicate"]))
    if kind == "drop":
        del lines[i]
    elif kind == "garbage":
        lines[i] = data.draw(st.text(max_size=80))
    elif kind == "truncate":
        lines = lines[:i]
    else:
        lines.insert(i, lines[i])
    f = tmp_path / "counts.txt"
    f.write_text("\n".join(lines))
    with contextlib.suppress(TraceError):
        log = plugin_log.read(f)
        assert log.counts.shape[1] == len(plugin_log.CLASSES)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=120) | st.sampled_from(["COPY runs TO '/tmp/x'", "ATTACH '/tmp/x'", "SET threads=1",
                                                     "SELECT 1; SELECT 2", "PRAGMA version", "SELECT * FROM read_text('/etc/passwd')"]))  # fmt: skip
def test_arbitrary_user_sql_is_an_answer_or_a_refusal(fuzz_root, text):
    from kit.core.errors import WarehouseError

    try:
        Warehouse.at(fuzz_root[0]).sql(text, timeout_s=10, max_rows=5)
    except WarehouseError:
        pass
