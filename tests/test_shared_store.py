"""The lab's shared warehouse as a DuckLake (kit.store.shared), with a SQLite catalog beside the data
(one machine; tests/test_lab.py runs it on PostgreSQL): runs published by several hosts' warehouses,
each in one transaction, readers seeing the union of their local file and the lake through the same
table names (sme2 sql, named queries), a writer killed mid-commit leaving nothing, duplicates seen
once and removed by maintenance, time travel, verification of the data files, migration from the
Parquet store of earlier releases, and the sql guard still closed. On the recorded run in
tests/data: no export, no measurement."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.runfolder import later_night as clone_run
from tests import clirun

from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import ingest, queries, recovery, usersql
from kit.store.schema import SCHEMA_VERSION
from kit.store.shared import CATALOG_ENV, LAKE, PUBLISHED, SHARED_ENV, SharedStore
from kit.store.warehouse import Warehouse


@pytest.fixture()
def lab(tmp_path, monkeypatch):
    store = tmp_path / "shared"
    monkeypatch.setenv(SHARED_ENV, str(store))
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    return (
        SharedStore.of(store),
        DataRoot.resolve(tmp_path / "host1"),
        DataRoot.resolve(tmp_path / "host2"),
        DataRoot.resolve(tmp_path / "analysis"),
    )


def _picture(wh: Warehouse) -> dict:
    """What readers see: rows per run in every published table, and a named query's answer."""
    seen = {}
    for table in PUBLISHED:
        rows = wh.sql(f"SELECT run_id, count(*) AS n FROM {table} GROUP BY run_id ORDER BY run_id")
        seen[table] = dict(zip(rows.run_id, rows.n))
    latest = queries.run(wh, "latest-ops", {"variant": "tiny_seg-fp32"})
    seen["latest-ops"] = sorted(map(tuple, latest[["run_id", "op_type"]].astype(str).values.tolist()))
    return seen


def test_two_hosts_publish_once_and_readers_see_the_union(lab, recorded_run):
    store, h1, h2, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1", started_at="2026-11-01T02:00:00Z")
    b = clone_run(recorded_run.run_dir, h2, "b", device="bench2", started_at="2026-11-02T02:00:00Z")
    assert ingest.ingest_run(h1, a) and ingest.ingest_run(h2, b)
    assert not ingest.ingest_run(h1, a)  # again: neither a local nor a shared duplicate
    assert Warehouse.at(h1).publish() == []

    assert store.run_ids() == {a.name, b.name}
    assert store.schema == f"v{SCHEMA_VERSION}"  # a schema migration starts a new schema in the lake
    # Each publish is a Parquet file per table under the data folder (none inlined in the catalog).
    for table in ("op_events", "runs"):
        assert len(store.files(table)) == 2 and all(f.is_relative_to(store.data) for f in store.files(table))

    for root in (h1, h2, anywhere):  # each host: its own run locally, the other's from the lake
        wh = Warehouse.at(root)
        runs = wh.sql("SELECT run_id, device FROM runs ORDER BY run_id")
        assert sorted(runs.run_id) == sorted([a.name, b.name]), root
        assert wh.sql("SELECT count(DISTINCT run_id) AS n FROM current_runs").n[0] == 2
        per_run = wh.sql("SELECT run_id, count(*) AS n FROM op_events GROUP BY run_id")
        stored = wh.sql("SELECT run_id, n_op_events AS n FROM runs")
        assert dict(zip(per_run.run_id, per_run.n)) == dict(zip(stored.run_id, stored.n))
        latest = queries.run(wh, "latest-ops", {"variant": "tiny_seg-fp32"})
        assert set(latest.run_id) == {a.name, b.name}
    # The analysis host measured nothing: its file is empty, everything comes from the lake.
    with Warehouse.at(anywhere).read(local=True) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


KILLED_MID_COMMIT = textwrap.dedent(
    """
    import os, signal, sys, duckdb
    from kit.store.shared import LAKE, PUBLISHED, SharedStore
    from kit.store.warehouse import Warehouse
    from pathlib import Path
    store = SharedStore.of(sys.argv[1])
    conn = duckdb.connect(sys.argv[2], read_only=True)
    store.attach(conn)
    conn.execute("BEGIN TRANSACTION")
    for table in PUBLISHED[:3]:  # some tables in, the transaction open
        conn.execute(f"INSERT INTO {LAKE}.{store.schema}.{table} BY NAME SELECT *, 'killed' AS publish_id "
                     f"FROM main.{table} WHERE run_id = ?", [sys.argv[3]])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_writer_killed_mid_commit_leaves_nothing_and_the_retry_stores_the_run_once(lab, recorded_run):
    store, h1, _, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    assert ingest.ingest_run(h1, a)  # published: the lake and its tables exist
    b = clone_run(recorded_run.run_dir, h1, "b", device="bench1")
    os.environ.pop(SHARED_ENV)  # b is ingested before the lab had a lake: not published
    try:
        assert ingest.ingest_run(h1, b)
    finally:
        os.environ[SHARED_ENV] = str(store.path)
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_MID_COMMIT, str(store.path), str(h1.warehouse), b.name],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    wh = Warehouse.at(anywhere)
    assert list(wh.sql("SELECT run_id FROM runs").run_id) == [a.name]
    for table in ("op_events", "latency_samples", "op_stats"):
        assert set(wh.sql(f"SELECT DISTINCT run_id FROM {table}").run_id) == {a.name}, table
    # The next start of host1 (recovery) publishes what is missing; nothing is doubled.
    assert recovery.recover(h1).published == [b.name]
    assert sorted(wh.sql("SELECT run_id FROM runs").run_id) == sorted([a.name, b.name])
    events = wh.sql("SELECT run_id, count(*) AS n FROM op_events GROUP BY run_id")
    assert events.n.nunique() == 1 and len(events) == 2
    with store.session() as conn:
        assert conn.execute(f"SELECT count(*) FROM {LAKE}.{store.schema}.runs").fetchone()[0] == 2


def _second_copy(store: SharedStore, run_id: str) -> None:
    """What two hosts that both checked before either committed leave: the run again, under
    another publish id."""
    with store.session(read_only=False) as conn:
        conn.execute("BEGIN TRANSACTION")
        for table in PUBLISHED:
            conn.execute(
                f"INSERT INTO {LAKE}.{store.schema}.{table} SELECT * REPLACE ('zz-second' AS publish_id) "
                f"FROM {LAKE}.{store.schema}.{table} WHERE run_id = ?",
                [run_id],
            )
        conn.execute("COMMIT")


def test_a_run_published_twice_at_once_is_seen_once_and_stored_once_after_maintenance(lab, recorded_run):
    store, h1, h2, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    assert ingest.ingest_run(h1, a)
    wh = Warehouse.at(anywhere)
    before = _picture(wh)
    # Two hosts that both checked before either committed: a second copy under another publish id.
    _second_copy(store, a.name)
    assert _picture(wh) == before  # readers take one copy
    done = store.compact()
    assert done.duplicates_removed == 1 and done.runs == 1
    with store.session() as conn:
        for table in PUBLISHED:
            ids = conn.execute(f"SELECT DISTINCT publish_id FROM {LAKE}.{store.schema}.{table}").fetchall()
            assert len(ids) <= 1 and ("zz-second",) not in ids, table
    assert _picture(wh) == before


def test_maintenance_merges_files_and_readers_see_the_same_rows(lab, recorded_run):
    store, h1, h2, anywhere = lab
    for s in "abc":
        assert ingest.ingest_run(h1, clone_run(recorded_run.run_dir, h1, s, device="bench1"))
    assert ingest.ingest_run(h2, clone_run(recorded_run.run_dir, h2, "d", device="bench2"))
    wh = Warehouse.at(anywhere)
    before = _picture(wh)
    assert len(before["runs"]) == 4 and len(set(before["op_events"].values())) == 1
    files = len(store.files("op_events"))
    done = store.compact()
    assert done.runs == 4 and done.files_before >= files == 4 and done.files_after < done.files_before
    assert len(store.files("op_events")) == 1  # four runs' files merged into one
    assert _picture(wh) == before


@pytest.mark.slow  # several lake snapshots: ~15 s on 2 cores (full tier)
def test_time_travel_history_and_the_snapshot_a_reader_pins(lab, recorded_run):
    store, h1, _, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    assert ingest.ingest_run(h1, a)
    after_a = store.snapshot()
    b = clone_run(recorded_run.run_dir, h1, "b", device="bench1")
    assert ingest.ingest_run(h1, b)
    assert store.snapshot() > after_a
    history = store.history()
    added = {run for snap in history for run in snap["runs_added"]}
    assert added == {a.name, b.name} and history[0]["runs_added"] == [b.name]
    then = Warehouse.at(anywhere, snapshot=after_a)
    assert list(then.sql("SELECT run_id FROM runs").run_id) == [a.name]
    assert set(then.query("SELECT DISTINCT run_id FROM op_events").run_id) == {a.name}
    assert then.lake_snapshot() == after_a
    assert sorted(Warehouse.at(anywhere).sql("SELECT run_id FROM runs").run_id) == sorted([a.name, b.name])
    with pytest.raises(WarehouseError, match="neither a snapshot number nor a time"):
        Warehouse.at(anywhere, snapshot="last tuesday").sql("SELECT 1")
    # A report names the snapshot it read, and --at rebuilds the older one (a and b share a run key:
    # the report shows the current run of each, a then, b now).
    from kit.report import builder

    old = builder.build(
        anywhere, "tiny_seg-fp32", anywhere.path / "old", image_format="svg", html_page=False, at=after_a
    )
    assert old.run_ids == [a.name] and old.snapshot == after_a
    assert f"lab DuckLake at snapshot {after_a}" in old.markdown.read_text()
    now = builder.build(anywhere, "tiny_seg-fp32", anywhere.path / "now", image_format="svg", html_page=False)
    assert now.run_ids == [b.name] and now.snapshot == store.snapshot()


def test_verify_names_missing_and_truncated_files_and_queries_say_which(lab, recorded_run):
    store, h1, _, anywhere = lab
    for s in "ab":
        assert ingest.ingest_run(h1, clone_run(recorded_run.run_dir, h1, s, device="bench1"))
    assert store.verify() == []
    first, second = store.files("op_events")
    first.unlink()
    data = second.read_bytes()
    second.write_bytes(data[: len(data) // 2])
    problems = {p.path: p.problem for p in store.verify()}
    assert problems[str(first)] == "missing" and "the catalog says" in problems[str(second)]
    with pytest.raises(WarehouseError) as info:
        Warehouse.at(anywhere).sql("SELECT count(*) FROM op_events")
    assert first.name in info.value.message or second.name in info.value.message


def test_the_sql_guard_stays_closed_with_a_lake(lab, recorded_run, tmp_path):
    store, h1, _, _ = lab
    ingest.ingest_run(h1, clone_run(recorded_run.run_dir, h1, "a", device="bench1"))
    (tmp_path / "secret.csv").write_text("x\n1\n")
    wh = Warehouse.at(h1)
    for bad in (
        f"SELECT * FROM read_csv('{tmp_path / 'secret.csv'}')",
        "SELECT * FROM glob('/etc/*')",
        f"SELECT * FROM read_parquet('{tmp_path}/host1/*.parquet')",
    ):
        with pytest.raises(WarehouseError, match="cannot reach files"):
            wh.sql(bad)
    for bad in (
        f"SELECT * FROM {LAKE}.{store.schema}.runs",  # around the views
        f"SELECT * FROM ducklake_snapshots('{LAKE}')",
        f"SELECT * FROM ducklake_expire_snapshots('{LAKE}', older_than => now())",
        f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)",
    ):
        with pytest.raises(WarehouseError, match="DuckLake is read through the table names"):
            wh.sql(bad)
    for bad in (
        f"ATTACH 'ducklake:sqlite:{tmp_path}/x.sqlite' AS x",
        f"DETACH {LAKE}",
        "SET enable_external_access = true",
    ):
        with pytest.raises(WarehouseError, match="read-only"):
            wh.sql(bad)
    with pytest.raises(WarehouseError, match="read-only"):
        wh.sql("COPY runs TO '/tmp/x.csv'")
    assert wh.sql("SELECT count(*) AS n FROM runs").n[0] == 1
    # Below the parser too: the engine refuses LOAD on a user-SQL connection, lake or not, though our
    # connections skip extension signature checks (kit.store.connection.ENGINE_CONFIG).
    (tmp_path / "evil.duckdb_extension").write_bytes(b"\0" * 512)
    for shared in (store, None):
        with usersql.user_sql_connection(wh.path, shared=shared) as conn:
            with pytest.raises(duckdb.PermissionException, match="Loading external extensions is disabled"):
                conn.execute(f"LOAD '{tmp_path / 'evil.duckdb_extension'}'")


def test_store_paths_and_catalogs_are_checked(tmp_path):
    with pytest.raises(WarehouseError, match="glob, quote"):
        SharedStore.of(tmp_path / "a*b")
    with pytest.raises(WarehouseError, match="glob, quote"):
        SharedStore.of(tmp_path / "a'b")
    for bad in ("mysql:host=x", "postgres:", "ducklake:/x", "sqlite"):
        with pytest.raises(WarehouseError, match="not a DuckLake catalog"):
            SharedStore.of(tmp_path / "s", bad)
    lake = SharedStore.of(tmp_path / "s", "postgres:dbname=lake host=db password=secret")
    assert "secret" not in lake.describe() and lake.kind == "postgres"
    assert SharedStore.of(tmp_path / "s").catalog == f"sqlite:{tmp_path / 's' / 'catalog.sqlite'}"


def _legacy_store(src_root: DataRoot, store_path) -> int:
    """A shared store as earlier releases wrote it: one Parquet file per table per run."""
    import duckdb

    conn = duckdb.connect(str(src_root.warehouse), read_only=True)
    runs = conn.execute("SELECT run_id, device, CAST(started_at AS DATE) FROM runs").fetchall()
    for run_id, device, day in runs:
        for table in PUBLISHED:
            exclude = " EXCLUDE (run_no)" if table == "runs" else ""
            arrow = conn.execute(f"SELECT *{exclude} FROM {table} WHERE run_id = ?", [run_id]).to_arrow_table()
            if table != "runs" and arrow.num_rows == 0:
                continue
            folder = store_path / f"v{SCHEMA_VERSION}" / table / f"date={day}" / f"device={device}"
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(arrow, folder / f"{run_id}.parquet")
    conn.close()
    return len(runs)


def test_migrate_moves_the_parquet_store_and_the_local_file_once(lab, recorded_run, tmp_path, monkeypatch):
    from kit.store import migration

    store, h1, h2, anywhere = lab
    monkeypatch.delenv(SHARED_ENV)  # before the lake: two hosts' runs in an old Parquet store
    for s in "ab":
        ingest.ingest_run(h2, clone_run(recorded_run.run_dir, h2, s, device="bench2"))
    ingest.ingest_run(h1, clone_run(recorded_run.run_dir, h1, "c", device="bench1"))
    legacy = tmp_path / "old-store"
    assert _legacy_store(h2, legacy) == 2
    before = {**_picture(Warehouse.at(h2)), "c": _picture(Warehouse.at(h1))["runs"]}

    monkeypatch.setenv(SHARED_ENV, str(store.path))
    result = migration.migrate(Warehouse.at(h1), store, legacy)
    assert result == {"local_published": 1, "legacy_runs_added": 2, "lake_runs": 3}
    after = _picture(Warehouse.at(anywhere))
    for table in PUBLISHED:
        assert {k: v for k, v in after[table].items() if k in before[table]} == before[table], table
    assert set(after["runs"]) == set(before["runs"]) | set(before["c"])
    again = migration.migrate(Warehouse.at(h1), store, legacy)
    assert again == {"local_published": 0, "legacy_runs_added": 0, "lake_runs": 3}


def _sme2(*args, home, env_extra, check=True):
    return clirun.sme2_here(*args, home=home, env=env_extra, check=check)


def test_cli_sql_info_publish_history_verify_and_compact_over_the_lake(lab, recorded_run, monkeypatch):
    store, h1, h2, anywhere = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    b = clone_run(recorded_run.run_dir, h2, "b", device="bench2")
    monkeypatch.delenv(SHARED_ENV)  # ingested before the lab had a lake: nothing published
    ingest.ingest_run(h1, a)
    ingest.ingest_run(h2, b)
    assert not store.path.exists()
    env = {SHARED_ENV: str(store.path)}
    info = json.loads(_sme2("warehouse", "info", "--json", home=h1.path, env_extra=env).stdout)
    assert info["shared_store"]["local_runs_not_published"] == [a.name]
    for root in (h1, h2):
        assert "1 run(s) published" in _sme2("warehouse", "publish", home=root.path, env_extra=env).stdout
    assert "0 run(s) published" in _sme2("warehouse", "publish", home=h1.path, env_extra=env).stdout
    query = "SELECT device, count(*) AS n FROM runs GROUP BY 1 ORDER BY 1"
    out = _sme2("sql", query, "-f", "json", home=anywhere.path, env_extra=env)
    assert json.loads(out.stdout) == [{"device": "bench1", "n": 1}, {"device": "bench2", "n": 1}]
    history = json.loads(_sme2("warehouse", "history", "--json", home=anywhere.path, env_extra=env).stdout)
    first = next(h["snapshot"] for h in history if h["runs_added"] == [a.name])
    then = _sme2("sql", query, "-f", "json", "--at", str(first), home=anywhere.path, env_extra=env)
    assert json.loads(then.stdout) == [{"device": "bench1", "n": 1}]
    assert json.loads(_sme2("warehouse", "verify", "--json", home=h1.path, env_extra=env).stdout) == []
    done = json.loads(_sme2("warehouse", "compact", "--json", home=h1.path, env_extra=env).stdout)
    assert done["runs"] == 2 and done["files_after"] <= done["files_before"]
    no_store = {k: v for k, v in os.environ.items() if k != SHARED_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", "warehouse", "compact"],
        capture_output=True,
        text=True,
        env=no_store,
        timeout=120,
    )
    assert proc.returncode != 0 and "SME2_SHARED_STORE is not set" in proc.stdout + proc.stderr
    no_lake = _sme2("sql", "SELECT 1", "--at", "3", home=h1.path, env_extra={}, check=False)
    assert no_lake.returncode != 0 and "time travel reads the lab's DuckLake" in no_lake.stdout + no_lake.stderr


def test_the_nightly_maintenance_asset_removes_a_duplicate_publish(lab, recorded_run):
    import dagster as dg

    from sme2_assets.assets.lake import lake_maintenance

    store, h1, _, _ = lab
    a = clone_run(recorded_run.run_dir, h1, "a", device="bench1")
    assert ingest.ingest_run(h1, a)
    _second_copy(store, a.name)  # a second host's racing copy of the same run
    result = dg.materialize([lake_maintenance])
    assert result.success
    meta = result.asset_materializations_for_node("lake_maintenance")[0].metadata
    assert meta["duplicate publishes removed"].value == 1 and meta["runs"].value == 1
    assert "catalog.sqlite" in meta["lake"].value
    with store.session() as conn:
        assert conn.execute(f"SELECT count(*) FROM {LAKE}.{store.schema}.runs").fetchone()[0] == 1
