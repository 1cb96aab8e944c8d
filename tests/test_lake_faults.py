"""The lab's DuckLake with its catalog in a real PostgreSQL (started here, as tests/test_lab.py does),
under the faults a lab meets: two hosts committing at once (different runs, and the same run from
both), a writer killed mid-commit, PostgreSQL going down between runs of a sweep. Data files deleted
or truncated are covered on a SQLite catalog in tests/test_shared_store.py (the files are the same).
On the recorded run in tests/data: no export, no measurement."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import ingest, recovery, runrows
from kit.store.shared import CATALOG_ENV, LAKE, PUBLISHED, SHARED_ENV, SharedStore
from kit.store.warehouse import Warehouse
from tests import labservices
from tests.runfolder import clone_run

MISSING = labservices.missing_binaries() + [m for m in ("psycopg2",) if importlib.util.find_spec(m) is None]
pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,  # a PostgreSQL started per module: ~1 min on 2 cores
    pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (apt-get install postgresql)"),
]

# One host's publisher: waits for the starting gun (a file), then publishes its runs.
PUBLISHER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from kit.store.shared import SharedStore
    from kit.store.warehouse import Warehouse
    store, catalog, local, go, *runs = sys.argv[1:]
    while not Path(go).exists():
        time.sleep(0.005)
    print(json.dumps(Warehouse(Path(local), SharedStore.of(store, catalog)).publish(runs)))
    """
)
# A writer killed with its transaction open: some tables inserted, no COMMIT.
KILLED_MID_COMMIT = textwrap.dedent(
    """
    import os, signal, sys, duckdb
    from kit.store.shared import LAKE, PUBLISHED, SharedStore
    store = SharedStore.of(sys.argv[1], sys.argv[2])
    conn = duckdb.connect(sys.argv[3], read_only=True)
    store.attach(conn)
    conn.execute("BEGIN TRANSACTION")
    for table in PUBLISHED[:3]:
        conn.execute(f"INSERT INTO {LAKE}.{store.schema}.{table} BY NAME SELECT *, 'killed' AS publish_id "
                     f"FROM main.{table} WHERE run_id = ?", [sys.argv[4]])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture(scope="module")
def pg():
    server = labservices.Postgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture()
def lake(pg, tmp_path, monkeypatch) -> SharedStore:
    """A new lake (its own catalog database) per test; this process's readers find it in the env."""
    store = SharedStore.of(tmp_path / "shared", "postgres:" + pg.create_database(f"lake_{secrets.token_hex(4)}"))
    monkeypatch.setenv(SHARED_ENV, str(store.path))
    monkeypatch.setenv(CATALOG_ENV, store.catalog)
    return store


def _host(tmp_path: Path, name: str, recorded_run, run_ids: list[str]) -> DataRoot:
    """A lab host whose local warehouse holds `run_ids` (copies of the recorded run), unpublished."""
    root = DataRoot.resolve(tmp_path / name)
    for run_id in run_ids:
        folder = clone_run(recorded_run.run_dir, root, run_id)
        assert Warehouse(root.warehouse).insert_run(runrows.rows_from_run(folder))
    return root


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)}


def _seen_once_and_whole(wh: Warehouse, run_ids: set[str]) -> None:
    runs = wh.sql("SELECT run_id, count(*) AS n FROM runs GROUP BY run_id")
    assert set(runs.run_id) == run_ids and (runs.n == 1).all(), runs.to_string()
    events = wh.sql(
        "SELECT r.run_id, any_value(r.n_op_events) AS want, count(e.run_id) AS got FROM runs r"
        " LEFT JOIN op_events e USING (run_id) GROUP BY r.run_id"
    )
    assert (events.want == events.got).all(), events.to_string()


def _stored(store: SharedStore) -> dict[str, int]:
    """Copies of each run in the lake's runs table (readers see one; maintenance keeps one)."""
    with store.session() as conn:
        rows = conn.execute(f"SELECT run_id, count(*) FROM {LAKE}.{store.schema}.runs GROUP BY run_id").fetchall()
    return dict(rows)


def test_two_hosts_committing_at_once_different_runs_and_the_same_run(lake, recorded_run, tmp_path):
    same = "shared-run"  # both hosts hold it (a run folder copied between hosts, published by both)
    hosts = {
        "host1": _host(tmp_path, "host1", recorded_run, ["h1-a", "h1-b", same]),
        "host2": _host(tmp_path, "host2", recorded_run, ["h2-a", "h2-b", same]),
    }
    # Both create the lake's tables at once too: nothing exists yet.
    go = tmp_path / "go"
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-c",
                PUBLISHER,
                str(lake.path),
                lake.catalog,
                str(root.warehouse),
                str(go),
                *sorted(p.name for p in root.runs.iterdir() if not p.name.startswith(".")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for name, root in hosts.items()
    }
    time.sleep(1.0)  # both importing done, waiting for the gun
    go.touch()
    published = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} failed:\n{err}"
        published[name] = set(json.loads(out.strip().splitlines()[-1]))
    assert published["host1"] >= {"h1-a", "h1-b"} and published["host2"] >= {"h2-a", "h2-b"}
    assert same in published["host1"] | published["host2"]

    everything = {"h1-a", "h1-b", "h2-a", "h2-b", same}
    analysis = Warehouse.at(DataRoot.resolve(tmp_path / "analysis"))
    _seen_once_and_whole(analysis, everything)
    before = analysis.sql("SELECT run_id, count(*) AS n FROM op_events GROUP BY run_id ORDER BY run_id")
    stored = _stored(lake)
    assert set(stored) == everything and stored[same] in (1, 2)  # two copies only if both checks raced
    lake.compact()
    assert _stored(lake) == dict.fromkeys(everything, 1)  # stored once after maintenance
    assert analysis.sql("SELECT run_id, count(*) AS n FROM op_events GROUP BY run_id ORDER BY run_id").equals(before)
    assert lake.verify() == []


def test_a_writer_killed_mid_commit_leaves_nothing_and_the_retry_stores_it_once(lake, recorded_run, tmp_path):
    host = _host(tmp_path, "host1", recorded_run, ["first", "second"])
    assert Warehouse.at(host).publish(["first"]) == ["first"]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_MID_COMMIT, str(lake.path), lake.catalog, str(host.warehouse), "second"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    analysis = Warehouse.at(DataRoot.resolve(tmp_path / "analysis"))
    _seen_once_and_whole(analysis, {"first"})
    for table in PUBLISHED:
        assert set(analysis.sql(f"SELECT DISTINCT run_id FROM {table}").run_id) <= {"first"}, table
    # The host's next start publishes what its file has and the lake lacks: once.
    assert recovery.recover(host).published == ["second"]
    assert recovery.recover(host).published == []
    _seen_once_and_whole(analysis, {"first", "second"})
    assert _stored(lake) == {"first": 1, "second": 1}


def test_postgres_down_mid_sweep_is_a_clear_error_loses_nothing_and_the_next_attempt_publishes(
    lake, pg, recorded_run, tmp_path
):
    host = DataRoot.resolve(tmp_path / "host1")
    first = clone_run(recorded_run.run_dir, host, "sweep-1")
    assert ingest.ingest_run(host, first)
    second = clone_run(recorded_run.run_dir, host, "sweep-2")
    pg.halt()  # the catalog's server dies between two runs of a sweep
    try:
        with pytest.raises(WarehouseError) as e:
            ingest.ingest_run(host, second)
        assert "PostgreSQL catalog" in str(e.value) and "sme2 warehouse publish" in e.value.hint
        # Nothing lost: the run committed locally before the publish was tried.
        local = Warehouse(host.warehouse).sql("SELECT run_id FROM runs ORDER BY run_id")
        assert list(local.run_id) == ["sweep-1", "sweep-2"]
        with pytest.raises(WarehouseError, match="PostgreSQL catalog"):  # readers say why, too
            Warehouse.at(host).sql("SELECT count(*) FROM runs")
    finally:
        pg.resume()
    # PostgreSQL back: the next attempt (a new run's ingest, recovery, or `sme2 warehouse publish`) publishes it.
    assert Warehouse.at(host).publish() == ["sweep-2"]
    _seen_once_and_whole(Warehouse.at(DataRoot.resolve(tmp_path / "analysis")), {"sweep-1", "sweep-2"})
    assert not ingest.ingest_run(host, second)  # again: nothing added anywhere
    assert _stored(lake) == {"sweep-1": 1, "sweep-2": 1}
