"""The DuckDB warehouse: idempotent ingestion, supersession, retention, read-only SQL, named
queries, lock waiting, and 8 concurrent writers with a reader that must only see whole runs
(mostly on the recorded run in tests/data)."""

import json
import multiprocessing
import subprocess
import sys
import time

import pytest

from tests.runfolder import later_night as clone_run

from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import connection, ingest, queries, schema
from kit.store.connection import scalar
from kit.store.warehouse import Warehouse


def run_iterations(run_dir) -> int:
    return json.loads((run_dir / "run.json").read_text())["iterations"]


@pytest.fixture()
def wh_root(tmp_path):
    return DataRoot.resolve(tmp_path / "home")


def test_schema_is_created_and_versioned(wh_root):
    wh = Warehouse.at(wh_root)
    wh.ensure()
    wh.ensure()  # migrating twice is a no-op
    with wh.read() as conn:
        assert scalar(conn, "SELECT max(version) FROM schema_version") == schema.SCHEMA_VERSION
        assert scalar(conn, "SELECT count(*) FROM schema_version") == schema.SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert set(schema.TABLES) | {"current_runs"} <= tables


def test_ingest_is_idempotent_and_complete(wh_root, recorded_run):
    run = clone_run(recorded_run.run_dir, wh_root, "a")
    assert ingest.ingest_run(wh_root, run) is True
    assert ingest.ingest_run(wh_root, run) is False
    wh = Warehouse.at(wh_root)
    r = wh.query("SELECT * FROM runs")
    assert len(r) == 1
    n_events = wh.query("SELECT count(*) n FROM op_events").n[0]
    assert n_events == r.n_op_events[0] == len(recorded_run.trace.operators)
    assert wh.query("SELECT count(*) n FROM latency_samples WHERE kind = 'timing'").n[0] == run_iterations(run)
    assert r.e2e_median_ms[0] == pytest.approx(recorded_run.analysis.e2e["median_ms"])
    cats = wh.query("SELECT sum(share_of_operators) s FROM category_stats WHERE scheme = 'blog'").s[0]
    assert cats == pytest.approx(1.0, abs=0.05)  # medians of ratios: close to, not exactly, 1


def test_newer_run_supersedes_without_duplicating(wh_root, recorded_run):
    a = clone_run(recorded_run.run_dir, wh_root, "old", "2026-11-01T02:00:00Z")
    b = clone_run(recorded_run.run_dir, wh_root, "new", "2026-11-02T02:00:00Z")
    for d in (b, a):
        ingest.ingest_run(wh_root, d)
    wh = Warehouse.at(wh_root)
    cur = wh.query("SELECT run_id FROM current_runs")
    assert cur.run_id.tolist() == [b.name]
    assert wh.query("SELECT count(*) n FROM runs").n[0] == 2
    per_run = wh.query("SELECT run_id, count(*) n FROM op_events GROUP BY run_id")
    assert per_run.n.nunique() == 1  # each run's rows exactly once


def test_retention_drops_old_events_and_keeps_aggregates(wh_root, recorded_run):
    old = clone_run(recorded_run.run_dir, wh_root, "ancient", "2020-01-01T00:00:00Z")
    ingest.ingest_run(wh_root, old)
    ingest.ingest_run(wh_root, clone_run(recorded_run.run_dir, wh_root, "fresh"))
    wh = Warehouse.at(wh_root)
    pruned = wh.prune_events(30)
    assert pruned == len(recorded_run.trace.operators)
    left = wh.query("SELECT run_id, count(*) n FROM op_events GROUP BY run_id")
    assert old.name not in set(left.run_id)
    assert wh.query("SELECT count(*) n FROM op_stats WHERE run_id = ?", [old.name]).n[0] > 0


def test_sql_is_read_only(wh_root, recorded_run):
    ingest.ingest_run(wh_root, clone_run(recorded_run.run_dir, wh_root, "x"))
    wh = Warehouse.at(wh_root)
    assert wh.sql("SELECT count(*) AS n FROM runs").n[0] == 1
    for bad in (
        "DELETE FROM runs",
        "DROP TABLE runs",
        "INSERT INTO runs SELECT * FROM runs",
        "SELECT 1; DELETE FROM runs",
    ):
        with pytest.raises(WarehouseError, match="read-only"):
            wh.sql(bad)
    assert wh.sql("SELECT count(*) AS n FROM runs").n[0] == 1
    with pytest.raises(WarehouseError, match="query failed"):
        wh.sql("SELECT nope FROM runs")


def test_named_queries_answer_the_everyday_questions(wh_root, host_run, qemu_runs):
    for i, d in enumerate([host_run.run_dir, *(r.run_dir for r in qemu_runs.values())]):
        ingest.ingest_run(wh_root, clone_run(d, wh_root, f"q{i}"))
    later = clone_run(host_run.run_dir, wh_root, "later", "2099-01-01T00:00:00Z")
    ingest.ingest_run(wh_root, later)
    wh = Warehouse.at(wh_root)
    ops = queries.run(wh, "latest-ops", {"variant": "tiny_seg-fp32", "target": "host.sme2-off"})
    assert set(ops.run_id) == {later.name} and ops.median_ms.is_monotonic_decreasing
    hist = queries.run(wh, "op-history", {"op": "Convolution", "variant": "tiny_seg-fp32", "target": "host.sme2-off"})
    assert len(set(hist.run_id)) == 2
    shares = queries.run(wh, "category-shares", {"variant": "tiny_seg-int8"})
    qemu = shares[shares.device == "armv9-qemu"]
    assert set(qemu.category) == {"Convolution", "GEMM", "Data Movement", "Elementwise", "Other"}
    assert qemu.on_pct.notna().all() and qemu.off_pct.notna().all() and qemu.emulated.all()
    changes = queries.run(wh, "biggest-changes", {"variant": "tiny_seg-fp32", "target": "host.sme2-off"})
    assert (changes.run_b == later.name).all() and changes.delta_ms.abs().max() == pytest.approx(0.0)
    with pytest.raises(WarehouseError, match="needs op"):
        queries.run(wh, "op-history", {})
    with pytest.raises(WarehouseError, match="no named query"):
        queries.run(wh, "nope", {})


HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); c.execute('BEGIN'); print('held', flush=True); time.sleep(float(sys.argv[2]))"


def test_a_held_file_is_waited_for_then_reported(wh_root):
    wh = Warehouse.at(wh_root)
    wh.ensure()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(wh.path), "2"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    assert wh.query("SELECT count(*) n FROM runs").n[0] == 0  # waited, then read
    assert time.monotonic() - t0 > 0.5
    holder.wait()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(wh.path), "10"], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    try:
        with pytest.raises(WarehouseError, match="held by another process"):
            with connection.connect(wh.path, wait_s=1.0):
                pass
    finally:
        holder.kill()


def _writer(args):
    home, dirs = args
    root = DataRoot.resolve(home)
    return [ingest.ingest_run(root, d) for d in dirs]


def _reader(home, stop, out):
    """Query while writers write: every visible run must be whole."""
    import duckdb  # noqa: F401

    root = DataRoot.resolve(home)
    wh = Warehouse.at(root)
    seen, broken = 0, []
    while not stop.is_set():
        try:
            df = wh.query(
                "SELECT r.run_id, r.n_op_events, r.n_samples, (SELECT count(*) FROM op_events e WHERE e.run_id = r.run_id) AS e, (SELECT count(*) FROM latency_samples s WHERE s.run_id = r.run_id) AS s FROM runs r"
            )
        except WarehouseError:
            continue
        seen = max(seen, len(df))
        broken += [r.run_id for r in df.itertuples() if r.e != r.n_op_events or r.s != r.n_samples]
        time.sleep(0.05)
    out.put((seen, broken))


@pytest.mark.slow
def test_eight_concurrent_writers_and_a_reader(wh_root, recorded_run):
    dirs = [clone_run(recorded_run.run_dir, wh_root, f"c{i}") for i in range(16)]
    Warehouse.at(wh_root).ensure()
    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(str(wh_root.path), stop, out))
    reader.start()
    with ctx.Pool(8) as pool:
        # every run is offered to two writers: exactly one may insert it
        work = [(str(wh_root.path), [str(dirs[i]), str(dirs[(i + 1) % 16])]) for i in range(0, 16, 2)] + [
            (str(wh_root.path), [str(dirs[i])]) for i in range(1, 16, 2)
        ]
        inserted = [x for r in pool.map(_writer, work) for x in r]
    stop.set()
    seen, broken = out.get(timeout=60)
    reader.join(30)
    assert sum(inserted) == 16
    wh = Warehouse.at(wh_root)
    assert wh.query("SELECT count(*) n FROM runs").n[0] == 16
    per_run = wh.query("SELECT run_id, count(*) n FROM op_events GROUP BY run_id")
    assert len(per_run) == 16 and (per_run.n == len(recorded_run.trace.operators)).all()
    assert broken == [], f"reader saw partial runs: {broken[:3]}"
    assert seen > 0
