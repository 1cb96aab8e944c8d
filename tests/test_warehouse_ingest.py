"""Warehouse ingestion paths against each other and against the rows they were given: batch
(`sme2 warehouse ingest`, insert_each) and per-run (insert_run) store identical rows; the
normalized op events (schema v2) read back through the op_events view as the wide rows went in,
also when an iteration's events differ from the others'; a version-1 file migrates with its rows;
a run that fails mid-batch leaves no rows and the runs before it stay."""

from __future__ import annotations

import contextlib
import json
import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from kit.core.home import DataRoot
from kit.store import ingest, runrows, schema
from kit.store.warehouse import Warehouse
from tests.clirun import sme2

# Columns that differ by design between two ingestions of the same run.
VOLATILE = {"ingested_at", "run_no"}
KEYS = {
    "runs": ["run_id"],
    "latency_samples": ["run_id", "kind", "iteration"],
    "op_events": ["run_id", "iteration", "seq"],
    "op_stats": ["run_id", "op_type"],
    "category_stats": ["run_id", "scheme", "category"],
    "kernels": ["run_id", "op_type"],
    "artifacts": ["run_id", "kind"],
}


def _copies(host_run, root: DataRoot, n: int) -> list:
    out = []
    for i in range(n):
        rec = json.loads((host_run.run_dir / "run.json").read_text())
        dst = root.runs / f"{rec['run_id']}-copy{i}"
        shutil.copytree(host_run.run_dir, dst)
        rec["run_id"] = dst.name
        (dst / "run.json").write_text(json.dumps(rec))
        out.append(dst)
    return out


def _table(wh: Warehouse, table: str) -> pd.DataFrame:
    df = wh.query(f"SELECT * FROM {table} ORDER BY {', '.join(KEYS[table])}")
    return df.drop(columns=[c for c in df.columns if c in VOLATILE]).reset_index(drop=True)


def _events_in(rows: runrows.RunRows) -> pd.DataFrame:
    return rows.events.sort_values(KEYS["op_events"]).reset_index(drop=True)


def test_batch_and_per_run_paths_store_identical_rows(host_run, tmp_path):
    batch_root, single_root = DataRoot.resolve(tmp_path / "batch"), DataRoot.resolve(tmp_path / "single")
    folders = _copies(host_run, batch_root, 3)
    for f in folders:
        shutil.copytree(f, single_root.runs / f.name)
    done = ingest.ingest_folders(batch_root, ingest.expand_run_folders([batch_root.runs]))
    assert sorted(done.added) == sorted(f.name for f in folders) and not done.bad
    for f in folders:
        assert ingest.ingest_run(single_root, single_root.runs / f.name)
    batch, single = Warehouse.at(batch_root), Warehouse.at(single_root)
    for table in KEYS:
        a, b = _table(batch, table), _table(single, table)
        if "run_dir" in a:  # each path names its own data root
            a, b = a.drop(columns="run_dir"), b.drop(columns="run_dir")
        if "path" in a:
            a, b = a.drop(columns="path"), b.drop(columns="path")
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    # The normalized events read back exactly as the wide rows that went in.
    rows = runrows.rows_from_run(folders[0])
    stored = batch.query("SELECT * FROM op_events WHERE run_id = ? ORDER BY iteration, seq", [rows.run["run_id"]])
    pd.testing.assert_frame_equal(stored, _events_in(rows), check_dtype=False)
    # Ingesting again adds nothing.
    again = ingest.ingest_folders(batch_root, folders)
    assert not again.added and sorted(again.present) == sorted(f.name for f in folders)


def test_events_that_differ_between_iterations_get_their_own_slots(host_run, tmp_path):
    rows = runrows.rows_from_run(host_run.run_dir)
    ev = rows.events.copy()
    second = (ev.iteration == 1) & (ev.seq == ev.seq.min())
    ev.loc[second, "op_type"] = "Renamed (NC) #1"  # one event differs in one iteration only
    ev.loc[ev.iteration == 2, "kernel_hint"] = None
    changed = runrows.RunRows(
        rows.run, rows.samples, ev, rows.op_stats, rows.category_stats, rows.kernels, rows.artifacts
    )
    wh = Warehouse(tmp_path / "w.duckdb")
    assert wh.insert_run(changed)
    stored = wh.query("SELECT * FROM op_events ORDER BY iteration, seq")
    pd.testing.assert_frame_equal(
        stored, ev.sort_values(["iteration", "seq"]).reset_index(drop=True), check_dtype=False
    )
    slots = wh.query("SELECT count(*) AS n FROM op_event_slots").n[0]
    assert slots > ev[ev.iteration == 0].shape[0]  # the fallback: one slot per distinct description


def test_version_1_file_migrates_with_its_rows(host_run, tmp_path):
    rows = runrows.rows_from_run(host_run.run_dir)
    path = tmp_path / "v1.duckdb"
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    conn.execute(schema.MIGRATIONS[0])
    conn.execute("INSERT INTO schema_version VALUES (1, now())")
    for table, frame in rows.tables():  # the version-1 way: every table as it was
        if frame is not None and len(frame):
            v1_columns = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
            cols = ", ".join(f'"{c}"' for c in frame.columns if c in v1_columns)  # later columns arrive NULL
            conn.register("_f", frame)
            conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _f")
            conn.unregister("_f")
    conn.close()
    wh = Warehouse(path)
    wh.ensure()
    with wh.read() as c:
        assert c.execute("SELECT max(version) FROM schema_version").fetchone()[0] == schema.SCHEMA_VERSION
    stored = wh.query("SELECT * FROM op_events ORDER BY iteration, seq")
    assert stored.module.isna().all()  # v1 had no module column: unknown, not made up
    pd.testing.assert_frame_equal(
        stored.drop(columns="module"), _events_in(rows).drop(columns="module"), check_dtype=False
    )
    assert wh.query("SELECT run_no FROM runs").run_no.tolist() == [1]
    # New runs after the migration get the next number and the same shape.
    again = runrows.RunRows(
        {**rows.run, "run_id": "after-migration"},
        rows.samples.assign(run_id="after-migration"),
        rows.events.assign(run_id="after-migration"),
        rows.op_stats.assign(run_id="after-migration"),
        rows.category_stats.assign(run_id="after-migration"),
        rows.kernels.assign(run_id="after-migration"),
        rows.artifacts.iloc[0:0],
    )
    assert wh.insert_run(again)
    assert sorted(wh.query("SELECT run_no FROM runs").run_no.tolist()) == [1, 2]
    assert wh.query("SELECT count(*) AS n FROM op_events").n[0] == 2 * len(rows.events)


def test_a_run_failing_mid_batch_leaves_no_rows_and_keeps_the_runs_before(host_run, tmp_path):
    rows = runrows.rows_from_run(host_run.run_dir)

    def named(run_id, events=None):
        return runrows.RunRows(
            {**rows.run, "run_id": run_id},
            rows.samples.assign(run_id=run_id),
            (events if events is not None else rows.events).assign(run_id=run_id),
            rows.op_stats.assign(run_id=run_id),
            rows.category_stats.assign(run_id=run_id),
            rows.kernels.assign(run_id=run_id),
            rows.artifacts.iloc[0:0],
        )

    broken = rows.events.assign(duration_ms=np.where(rows.events.iteration == 3, np.nan, rows.events.duration_ms))
    wh = Warehouse(tmp_path / "w.duckdb")
    with pytest.raises(duckdb.ConstraintException):  # duration_ms is NOT NULL
        wh.insert_each(iter([named("good-1"), named("good-2"), named("bad", broken), named("never")]))
    assert sorted(wh.query("SELECT run_id FROM runs").run_id) == ["good-1", "good-2"]
    for table in ("op_event_times", "op_event_slots", "latency_samples", "op_stats"):
        per_run = wh.query(f"SELECT count(*) AS n FROM {table}").n[0]
        assert per_run % 2 == 0 and per_run > 0, table  # two whole runs, nothing of the third
    assert wh.query("SELECT count(*) AS n FROM op_events").n[0] == 2 * len(rows.events)


def test_warehouse_ingest_command_takes_run_folders_and_folders_of_them(host_run, tmp_path):
    root = DataRoot.resolve(tmp_path / "home")
    folders = _copies(host_run, root, 2)
    (root.runs / "not-a-run").mkdir()
    out = sme2("warehouse", "ingest", str(root.runs), home=root.path, check=False)
    assert out.returncode == 1 and "2 run(s) added" in out.stdout and "not-a-run" in out.stderr
    out = sme2("warehouse", "ingest", str(folders[0]), home=root.path)
    assert "0 run(s) added, 1 already present" in out.stdout


def test_batch_settings_do_not_outlive_the_batch(host_run, tmp_path):
    """fsync off, no automatic checkpoint, one thread: the database instance's settings, so they
    are reset when the batch ends, also for a connection of this process that outlives it."""
    rows = runrows.rows_from_run(host_run.run_dir)
    wh = Warehouse(tmp_path / "w.duckdb")
    kept = []

    def keep_a_reader(_rows, _added):
        if not kept:  # opened during the batch: shares the writer's instance
            kept.append(contextlib.ExitStack())
            kept.append(kept[0].enter_context(wh.read()))

    wh.insert_each(iter([rows]), on_run=keep_a_reader)
    try:
        conn = kept[1]
        fresh = duckdb.connect()
        known = {r[0] for r in fresh.execute("SELECT name FROM duckdb_settings()").fetchall()}
        # fsync_mode and enable_optimistic_write exist from DuckDB 2.0; the pinned 1.5 has neither.
        settings = [
            s for s in ("fsync_mode", "enable_optimistic_write", "checkpoint_threshold", "threads") if s in known
        ]
        assert {"checkpoint_threshold", "threads"} <= set(settings)
        now = conn.execute(f"SELECT {', '.join(f'current_setting({s!r})' for s in settings)}").fetchone()
        default = fresh.execute(f"SELECT {', '.join(f'current_setting({s!r})' for s in settings)}").fetchone()
        assert now == default
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        kept[0].close()
