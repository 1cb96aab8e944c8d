"""The lab's shared store (kit.store.shared): runs published once as immutable Parquet files by
several hosts' warehouses, readers seeing the union of their local file and the store through the
same table names (sme2 sql, named queries), a run invisible until its commit marker exists, and
the sql guard still closed. On the recorded run in tests/data: no export, no measurement."""

import json
import shutil

import pytest

from kit.core.errors import NameError_, WarehouseError
from kit.core.home import DataRoot
from kit.store.schema import SCHEMA_VERSION
from kit.store import queries, recovery, warehouse
from kit.store.shared import PUBLISHED, SHARED_ENV, SharedStore
from kit.store.warehouse import Warehouse


def clone_run(src, root: DataRoot, suffix: str, device: str | None = None, started_at: str | None = None):
    rec = json.loads((src / "run.json").read_text())
    dst = root.runs / f"{rec['run_id']}-{suffix}"
    shutil.copytree(src, dst)
    rec["run_id"] = dst.name
    if device:
        rec["device"], rec["target"] = device, f"{device}.sme2-off"
        rec["run_key"] = rec["run_key"].replace("host.sme2-off", rec["target"])
    if started_at:
        rec["started_at"] = started_at
    (dst / "run.json").write_text(json.dumps(rec))
    return dst


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    store = tmp_path / "shared"
    monkeypatch.setenv(SHARED_ENV, str(store))
    return (
        SharedStore.of(store),
        DataRoot.resolve(tmp_path / "host1"),
        DataRoot.resolve(tmp_path / "host2"),
        DataRoot.resolve(tmp_path / "analysis"),
    )


def test_two_hosts_publish_once_and_readers_see_the_union(lab, recorded_run):
    store, h1, h2, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1", started_at="2026-11-01T02:00:00Z")
    b = clone_run(recorded_run.run_dir, h2, "b", device="bench2", started_at="2026-11-02T02:00:00Z")
    assert warehouse.ingest_run(h1, a) and warehouse.ingest_run(h2, b)
    assert not warehouse.ingest_run(h1, a)  # again: neither a local nor a shared duplicate
    assert Warehouse.at(h1).publish() == []

    assert store.run_ids() == {a.name, b.name}
    marker = store.data / "runs" / "date=2026-11-01" / "device=bench1" / f"{a.name}.parquet"
    assert store.data.name == f"v{SCHEMA_VERSION}"  # the schema version: a migration starts a new folder
    assert marker.is_file()
    assert not list(store.path.rglob("*.tmp"))  # temp names renamed, nothing left over
    for table in PUBLISHED:  # a table a run has no rows in gets no file (host runs are not counted)
        assert len(store.files(table)) == (0 if table == "op_event_counts" else 2), table

    for root in (h1, h2, anywhere):  # each host: its own run locally, the other's from the store
        wh = Warehouse.at(root)
        runs = wh.sql("SELECT run_id, device FROM runs ORDER BY run_id")
        assert sorted(runs.run_id) == sorted([a.name, b.name]), root
        assert wh.sql("SELECT count(DISTINCT run_id) AS n FROM current_runs").n[0] == 2
        per_run = wh.sql("SELECT run_id, count(*) AS n FROM op_events GROUP BY run_id")
        stored = wh.sql("SELECT run_id, n_op_events AS n FROM runs")
        assert dict(zip(per_run.run_id, per_run.n)) == dict(zip(stored.run_id, stored.n))
        latest = queries.run(wh, "latest-ops", {"variant": "tiny_seg-fp32"})
        assert set(latest.run_id) == {a.name, b.name}
    # The analysis host measured nothing: its file is empty, everything comes from the store.
    with Warehouse.at(anywhere).read(local=True) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_a_run_without_its_commit_marker_is_invisible_and_republishing_completes_it(lab, recorded_run):
    store, h1, _, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    warehouse.ingest_run(h1, a)
    b = clone_run(recorded_run.run_dir, h1, "b", device="bench1")
    warehouse.ingest_run(h1, b)
    # A host that died mid-publish of b: some tables written, the runs file (the marker) not.
    for f in store.data.glob(f"runs/*/*/{b.name}.parquet"):
        f.unlink()
    for f in store.data.glob(f"op_stats/*/*/{b.name}.parquet"):
        f.unlink()
    wh = Warehouse.at(anywhere)
    assert list(wh.sql("SELECT run_id FROM runs").run_id) == [a.name]
    assert set(wh.sql("SELECT DISTINCT run_id FROM op_events").run_id) == {a.name}
    assert set(wh.sql("SELECT DISTINCT run_id FROM latency_samples").run_id) == {a.name}
    # The next start of host1 (recovery) publishes what is missing; nothing is doubled.
    assert recovery.recover(h1).published == [b.name]
    assert sorted(wh.sql("SELECT run_id FROM runs").run_id) == sorted([a.name, b.name])
    events = wh.sql("SELECT run_id, count(*) AS n FROM op_events GROUP BY run_id")
    assert events.n.nunique() == 1 and len(events) == 2
    assert len(store.files("runs")) == 2


def test_the_sql_guard_stays_closed_with_a_store(lab, recorded_run, tmp_path):
    store, h1, _, _ = lab
    warehouse.ingest_run(h1, clone_run(recorded_run.run_dir, h1, "a", device="bench1"))
    (tmp_path / "secret.csv").write_text("x\n1\n")
    wh = Warehouse.at(h1)
    for bad in (
        f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM read_parquet('{tmp_path}/host1/*.parquet')",
    ):
        with pytest.raises(WarehouseError, match="cannot reach files"):
            wh.sql(bad)
    with pytest.raises(WarehouseError, match="read-only"):
        wh.sql("SET enable_external_access = true")
    with pytest.raises(WarehouseError, match="read-only"):
        wh.sql("COPY runs TO '/tmp/x.csv'")
    assert wh.sql("SELECT count(*) AS n FROM runs").n[0] == 1


def test_store_paths_and_names_are_checked(tmp_path):
    with pytest.raises(WarehouseError, match="glob or quote"):
        SharedStore.of(tmp_path / "a*b")
    store = SharedStore.of(tmp_path / "s")
    with pytest.raises(NameError_):
        store.file("runs", "2026-11-30", "../etc", "r1")
    with pytest.raises(NameError_):
        store.file("runs", "2026-11-30", "bench1", "../r1")


def _sme2(*args, home, env_extra):
    import os
    import subprocess
    import sys

    env = {**os.environ, "SME2_HOME": str(home), **env_extra}
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, f"sme2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.slow  # four CLI processes: ~25 s on 2 cores
def test_cli_sql_info_and_publish_over_the_store(lab, recorded_run, monkeypatch):
    store, h1, h2, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    b = clone_run(recorded_run.run_dir, h2, "b", device="bench2")
    monkeypatch.delenv(SHARED_ENV)  # ingested before the lab had a store: nothing published
    warehouse.ingest_run(h1, a)
    warehouse.ingest_run(h2, b)
    assert not store.path.exists()
    env = {SHARED_ENV: str(store.path)}
    info = json.loads(_sme2("warehouse", "info", "--json", home=h1.path, env_extra=env).stdout)
    assert info["shared_store"]["local_runs_not_published"] == [a.name]
    for root in (h1, h2):
        assert "1 run(s) published" in _sme2("warehouse", "publish", home=root.path, env_extra=env).stdout
    assert "0 run(s) published" in _sme2("warehouse", "publish", home=h1.path, env_extra=env).stdout
    out = _sme2(
        "sql",
        "SELECT device, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1",
        "-f",
        "json",
        home=anywhere.path,
        env_extra=env,
    )
    assert json.loads(out.stdout) == [{"device": "bench1", "n": 1}, {"device": "bench2", "n": 1}]


def _picture(wh: Warehouse) -> dict:
    """What readers see: rows per run in every published table, and a named query's answer."""
    seen = {}
    for table in PUBLISHED:
        rows = wh.sql(f"SELECT run_id, count(*) AS n FROM {table} GROUP BY run_id ORDER BY run_id")
        seen[table] = dict(zip(rows.run_id, rows.n))
    latest = queries.run(wh, "latest-ops", {"variant": "tiny_seg-fp32"})
    seen["latest-ops"] = sorted(map(tuple, latest[["run_id", "op_type"]].astype(str).values.tolist()))
    return seen


def _partition_files(store: SharedStore, table: str, day: str, device: str) -> list[str]:
    return sorted(p.name for p in (store.data / table / f"date={day}" / f"device={device}").glob("*.parquet"))


def test_compaction_merges_a_partition_and_readers_see_the_same_rows(lab, recorded_run):
    store, h1, h2, anywhere = lab
    day = "2026-11-01"
    made = [
        clone_run(recorded_run.run_dir, h1, s, device="bench1", started_at=f"{day}T0{i}:00:00Z")
        for i, s in enumerate("abc")
    ]
    made.append(clone_run(recorded_run.run_dir, h2, "d", device="bench2", started_at=f"{day}T05:00:00Z"))
    for run in made[:3]:
        assert warehouse.ingest_run(h1, run)
    assert warehouse.ingest_run(h2, made[3])
    wh = Warehouse.at(anywhere)
    before = _picture(wh)
    assert len(before["runs"]) == 4 and len(set(before["op_events"].values())) == 1

    done = store.compact()  # by month: bench1's November in one file per table
    assert (done.partitions, done.runs) == (1, 3)  # bench2's lone run stays as it is (min_files=2)
    for table in ("runs", "op_events", "latency_samples", "op_stats"):
        (batch,) = _partition_files(store, table, "2026-11", "bench1")
        assert batch.startswith("batch-") and not (store.data / table / f"date={day}" / "device=bench1").exists(), table
    assert _picture(wh) == before
    assert store.run_ids() == {r.name for r in made}
    assert not list(store.path.rglob("*.tmp"))
    assert Warehouse.at(h1).publish() == [] and _partition_files(store, "runs", day, "bench1") == []

    # A run published after the compaction joins; the next compaction merges batch + new run.
    e = clone_run(recorded_run.run_dir, h1, "e", device="bench1", started_at=f"{day}T09:00:00Z")
    assert warehouse.ingest_run(h1, e)
    after_e = _picture(wh)
    assert set(after_e["runs"]) == {r.name for r in made} | {e.name}
    store.compact()
    (newer,) = _partition_files(store, "runs", "2026-11", "bench1")
    assert newer > batch and _partition_files(store, "runs", day, "bench1") == []
    assert _picture(wh) == after_e


def test_a_compaction_cut_short_anywhere_shows_every_run_once(lab, recorded_run):
    store, h1, _, anywhere = lab
    day = "2026-11-02"
    for i, s in enumerate("abc"):
        assert warehouse.ingest_run(
            h1, clone_run(recorded_run.run_dir, h1, s, device="bench1", started_at=f"{day}T0{i}:00:00Z")
        )
    # A run whose publish is still under way (no runs file): a compaction must not touch it.
    pending = clone_run(recorded_run.run_dir, h1, "p", device="bench1", started_at=f"{day}T08:00:00Z")
    assert warehouse.ingest_run(h1, pending)
    (marker,) = store.data.glob(f"runs/*/*/{pending.name}.parquet")
    held = marker.read_bytes()
    marker.unlink()
    wh = Warehouse.at(anywhere)
    before = _picture(wh)
    assert pending.name not in before["runs"]
    singles = {p: p.read_bytes() for p in store.data.rglob("*.parquet")}

    store.compact(by="day")
    assert _picture(wh) == before
    assert store.data.joinpath("op_events", f"date={day}", "device=bench1", f"{pending.name}.parquet").exists()
    batches = {p: p.read_bytes() for p in store.data.rglob("batch-*.parquet")}

    # Died after writing the batches, before deleting what they merged: both are there.
    for p, data in singles.items():
        p.write_bytes(data)
    assert _picture(wh) == before
    # Died before the batch's runs file (its commit marker): the other batches are ignored.
    for p in store.data.glob("runs/*/*/batch-*.parquet"):
        p.unlink()
    assert _picture(wh) == before
    # The next compaction settles it: one batch per table again, nothing doubled or lost.
    store.compact(by="day")
    assert _picture(wh) == before
    assert [n for n in _partition_files(store, "op_events", day, "bench1") if n.startswith("batch-")] != []
    assert all(not p.exists() for p in batches if "runs" not in p.parts)

    # The pending run's publish completes: it appears once, beside the compacted runs.
    marker.write_bytes(held)
    now = _picture(wh)
    assert set(now["runs"]) == set(before["runs"]) | {pending.name}
    assert now["op_events"][pending.name] == before["op_events"][next(iter(before["op_events"]))]


def test_compact_command_needs_a_store_and_reports_json(lab, recorded_run, tmp_path):
    store, h1, _, _ = lab
    for s in "ab":
        warehouse.ingest_run(
            h1, clone_run(recorded_run.run_dir, h1, s, device="bench1", started_at="2026-11-03T01:00:00Z")
        )
    env = {SHARED_ENV: str(store.path)}
    out = json.loads(_sme2("warehouse", "compact", "--json", home=h1.path, env_extra=env).stdout)
    assert out == {
        "partitions": 1,
        "runs": 2,
        "files_written": out["files_written"],
        "files_removed": out["files_removed"],
    }
    assert out["files_removed"] > out["files_written"] >= 4
    import os
    import subprocess
    import sys

    no_store = {k: v for k, v in os.environ.items() if k != SHARED_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", "warehouse", "compact"],
        capture_output=True,
        text=True,
        env=no_store,
        timeout=120,
    )
    assert proc.returncode != 0 and "SME2_SHARED_STORE is not set" in proc.stdout + proc.stderr
