"""A device lab across hosts, for real on this machine (docs/deployment.md): the Dagster instance on
a PostgreSQL of its own, a Redis broker, two `sme2 worker` processes on two queues standing for two
lab hosts (each with its own data root, runner cache and warehouse file), run coordinators
executing `profile` runs on the lab executor, and the lab's DuckLake (catalog in that PostgreSQL, its
own database; data files in a shared folder) as the lab's warehouse.

- A sweep (tiny_seg fp32 x one device per host, both hosts at once, Python runtime, size small, 5 iterations;
  nightly also tiny_seg fp32 on the emulated SME2 pair attached to the second host, native runner)
  is consumed by both workers: every step of a device's run executes on that device's host,
  every run lands exactly once in the lake, and `sme2 sql` / named queries on a third
  host that measured nothing see all of them.
- Nightly: a worker killed mid-measurement (SIGKILL to its whole process tree: the host dies) leaves no
  partial rows anywhere; the run fails visibly, naming the lab host's queue, within the step
  deadline; with the worker back, re-executing the run stores it exactly once.

Needs initdb/pg_ctl/postgres (Debian's postgresql) and redis-server; skips without them."""

from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from kit.core.home import DataRoot
from kit.store.shared import CATALOG_ENV, PUBLISHED, SHARED_ENV, SharedStore
from kit.store.warehouse import Warehouse
from tests import labservices

MISSING = labservices.missing_binaries() + [
    m for m in ("dagster_celery", "dagster_postgres", "redis", "psycopg2") if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"the lab tests need {', '.join(MISSING)} (apt-get install postgresql redis-server; pip install -e .)",
    ),
]

HOSTS = ("lab-host-1", "lab-host-2")
DEVICES = """
[device.bench1]
transport = "local"
lab_host = "lab-host-1"
threads = [1]
size = "small"

[device.bench2]
transport = "local"
lab_host = "lab-host-2"
threads = [1]
size = "small"

[device.armv9-qemu]
transport = "qemu"
platform = "linux-aarch64"
recipe = "wheel"
threads = [1]
size = "small"
max_iterations = 10
lab_host = "lab-host-2"
"""
TARGET_OF = {"lab-host-1": "bench1.sme2-off", "lab-host-2": "bench2.sme2-off"}
HOST_OF = {"bench1": "lab-host-1", "bench2": "lab-host-2", "armv9-qemu": "lab-host-2"}
EMULATED_PAIR = ("armv9-qemu.sme2-on", "armv9-qemu.sme2-off")  # attached to lab-host-2


def run_config(iterations: int = 5, runner: str = "pybind") -> dict:
    settings = {"runner": runner, "iterations": iterations, "warmup": 1, "size": "small", "threads": [1]}
    return {"resources": {"sme2": {"config": settings}}}


@dataclass
class Lab:
    roots: dict[str, DataRoot]
    store: SharedStore
    env: dict
    coordinator_env: dict
    workers: dict[str, labservices.Worker]

    def tags(self, target: str) -> dict:
        from sme2_assets.partitions import run_tags

        return run_tags(target, self.roots["analysis"])

    def warehouse(self, host: str = "analysis", shared: bool = True) -> Warehouse:
        return Warehouse(self.roots[host].warehouse, self.store if shared else None)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, home, qemu_setup):
    from sme2_assets import lab as lab_mode

    base = tmp_path_factory.mktemp("lab")
    pg = labservices.Postgres()
    redis = labservices.Redis(base / "redis")
    workers: dict[str, labservices.Worker] = {}
    try:
        pg.start()
        redis.start()
        store = SharedStore.of(base / "shared", "postgres:" + pg.create_database("sme2_lake"))
        roots = {name: DataRoot.resolve(base / name) for name in (*HOSTS, "analysis")}
        for root in roots.values():
            root.user_devices.write_text(DEVICES)
        env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SME2_HOME")}
        env.update(
            {
                lab_mode.PG_ENV: pg.url,
                lab_mode.BROKER_ENV: redis.url,
                SHARED_ENV: str(store.path),
                CATALOG_ENV: store.catalog,
                "PYTHONPATH": os.pathsep.join(p for p in (str(labservices.REPO), env.get("PYTHONPATH")) if p),
                "SME2_EXPORT_CACHE": env.get("SME2_EXPORT_CACHE") or str(Path.home() / ".cache/sme2/exports"),
                "SME2_TOOLS": str(home.tools),  # QEMU and the aarch64 package, set up once (qemu_setup)
            }
        )
        home = roots["analysis"].dagster_home
        lab_mode.write_instance_yaml(home, env)
        coordinator_env = {**env, "DAGSTER_HOME": str(home), "SME2_HOME": str(roots["analysis"].path)}
        labservices.create_instance_schema(coordinator_env)  # once, as a lab's admin does, before any worker
        for host in HOSTS:  # each lab host: its own data root (runs, runners, warehouse) and DAGSTER_HOME
            workers[host] = labservices.Worker(host, roots[host].path, env).start()
        yield Lab(roots, store, env, coordinator_env, workers)
    finally:
        for w in workers.values():
            w.stop()
        redis.stop()
        pg.stop()


def _n(wh: Warehouse, sql: str) -> int:
    return int(wh.sql(sql).n[0]) if wh.path.exists() or wh.shared is not None else 0


def _check(result: dict) -> None:
    assert result["success"], "run failed:\n" + "\n".join(result["errors"])


def _complete(wh: Warehouse) -> None:
    """Every run the union shows exactly once, with all of its rows."""
    dup = wh.sql("SELECT run_id, count(*) AS n FROM runs GROUP BY run_id HAVING count(*) > 1")
    assert dup.empty, f"runs stored more than once: {list(dup.run_id)}"
    events = wh.sql(
        "SELECT r.run_id, r.n_op_events AS want, count(e.run_id) AS got FROM runs r"
        " LEFT JOIN op_events e USING (run_id) GROUP BY ALL"
    )
    assert (events.want == events.got).all(), events.to_string()
    samples = wh.sql(
        "SELECT r.run_id, r.n_samples AS want, count(s.run_id) AS got FROM runs r"
        " LEFT JOIN latency_samples s USING (run_id) GROUP BY ALL"
    )
    assert (samples.want == samples.got).all(), samples.to_string()


def test_two_lab_hosts_consume_a_sweep_and_every_run_lands_once(lab):
    variants = ["tiny_seg-fp32"]  # both hosts at once; more variants only queue behind each host's one slot
    results = []
    for variant in variants:
        procs = {
            host: labservices.launch(
                lab.coordinator_env, "profile", variant, TARGET_OF[host], lab.tags(TARGET_OF[host]), run_config()
            )
            for host in HOSTS
        }
        for host, proc in procs.items():
            result = labservices.result_of(proc, 1200)
            _check(result)
            results.append((host, variant, result))

    for host, _variant, result in results:
        # Every step of the run (device_trace, warehouse_rows and the views) ran on its host's worker.
        assert {"device_trace", "warehouse_rows", "robust_stats"} <= set(result["workers"]), result
        assert all(w.startswith(f"{host}@") for w in result["workers"].values()), (host, result["workers"])

    wh = lab.warehouse()
    runs = wh.sql("SELECT run_id, variant, device, target, run_dir FROM runs ORDER BY variant, target")
    assert sorted(zip(runs.variant, runs.target)) == sorted([(v, t) for v in variants for t in TARGET_OF.values()])
    for r in runs.itertuples():  # measured where the device is attached
        assert Path(r.run_dir).is_relative_to(lab.roots[HOST_OF[r.device]].path), (r.device, r.run_dir)
    _complete(wh)
    # The analysis host measured nothing: everything it sees came from the store.
    assert lab.warehouse(shared=False).path.exists()
    assert lab.warehouse(shared=False).sql("SELECT count(*) AS n FROM runs").n[0] == 0
    assert lab.store.run_ids() == set(runs.run_id)
    for table in PUBLISHED:  # every table has rows (count rows: only counted runs of emulated devices have them)
        assert wh.sql(f"SELECT count(DISTINCT run_id) AS n FROM {table}").n[0] or table == "op_event_counts", table
    # The lake's data are Parquet files under the shared folder.
    files = lab.store.files("op_events")
    assert files and all(f.is_relative_to(lab.store.data) for f in files)
    # Publishing again from either host adds nothing; the named queries read the union.
    for host in HOSTS:
        assert lab.warehouse(host).publish() == []
        local = lab.warehouse(host, shared=False).sql("SELECT device FROM runs")
        assert sorted(local.device) == sorted(r.device for r in runs.itertuples() if HOST_OF[r.device] == host)
    from kit.store import queries

    shares = queries.run(wh, "category-shares", {"variant": "tiny_seg-fp32"})
    assert set(shares.device) == {t.split(".")[0] for t in TARGET_OF.values()}  # the sweep's devices
    # After the engine's maintenance (merged files, old snapshots expired), the lab reads the same runs and rows.
    done = lab.store.compact()
    assert done.runs == len(runs) and done.files_after < done.files_before
    assert lab.store.verify() == []
    assert set(lab.store.run_ids()) == set(runs.run_id)
    _complete(lab.warehouse())
    assert queries.run(lab.warehouse(), "category-shares", {"variant": "tiny_seg-fp32"}).equals(shares)


# Nightly (pyproject.toml): the emulated pair adds two QEMU runs to the lab's sweep, and the killed
# worker waits out a step deadline; crash safety of a publish is tested on every push
# (tests/test_lake_faults.py: a writer SIGKILLed mid-commit, PostgreSQL stopped mid-sweep).
@pytest.mark.nightly
def test_the_emulated_pair_attached_to_a_lab_host_runs_there_and_lands_once(lab):
    results = []
    for target in EMULATED_PAIR:  # one device, one run at a time
        proc = labservices.launch(
            lab.coordinator_env, "profile", "tiny_seg-fp32", target, lab.tags(target), run_config(runner="native")
        )
        result = labservices.result_of(proc, 1200)
        _check(result)
        results.append(result)
    for result in results:
        assert all(w.startswith("lab-host-2@") for w in result["workers"].values()), result["workers"]
    wh = lab.warehouse()
    runs = wh.sql("SELECT target, run_dir FROM runs WHERE device = 'armv9-qemu'")
    assert sorted(runs.target) == sorted(EMULATED_PAIR)
    assert all(Path(d).is_relative_to(lab.roots["lab-host-2"].path) for d in runs.run_dir)
    _complete(wh)


@pytest.mark.nightly
def test_a_killed_worker_leaves_no_partial_rows_and_the_run_fails_visibly_then_retries(lab):
    host, target, variant = "lab-host-1", TARGET_OF["lab-host-1"], "tiny_seg-fp32"
    runs_dir = lab.roots[host].runs
    key = f"{variant}|{target}|small|t1|pybind"
    count = "SELECT count(*) AS n FROM runs WHERE run_key = '" + key + "'"
    before = _n(lab.warehouse(), count)
    before_local = _n(lab.warehouse(host, shared=False), count)
    committed_before = {p.name for p in runs_dir.iterdir() if not p.name.startswith(".")}
    staging_before = {p.name for p in runs_dir.iterdir() if p.name.startswith(".")}

    env = {**lab.coordinator_env, "SME2_LAB_STEP_TIMEOUT_S": "120"}
    proc = labservices.launch(env, "profile", variant, target, lab.tags(target), run_config(iterations=4000))
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # a measurement in progress: its staging folder exists
        if {p.name for p in runs_dir.iterdir() if p.name.startswith(".")} - staging_before:
            break
        assert proc.poll() is None, labservices.result_of(proc, 10)
        time.sleep(0.1)
    else:
        pytest.fail("the measurement never started on lab-host-1")
    time.sleep(1.0)
    lab.workers[host].kill()  # the host dies mid-run

    result = labservices.result_of(proc, 900)
    assert not result["success"]
    text = "\n".join(result["errors"])
    assert "lab-host-1" in text and "was not finished by a worker" in text, text
    # Nothing partial: no committed run folder, no row in the host's file or in the store.
    assert {p.name for p in runs_dir.iterdir() if not p.name.startswith(".")} == committed_before
    assert _n(lab.warehouse(host, shared=False), count) == before_local
    assert _n(lab.warehouse(), count) == before
    _complete(lab.warehouse())

    # The host comes back (systemd restarts the worker); re-executing the run stores it once.
    lab.workers[host].stop()
    lab.workers[host].start()
    retry = labservices.launch(lab.coordinator_env, "profile", variant, target, lab.tags(target), run_config())
    _check(labservices.result_of(retry, 1200))
    assert _n(lab.warehouse(), count) == before + 1
    _complete(lab.warehouse())
    # The dead measurement's staging folder was reclaimed by the next start on that host.
    assert not {p.name for p in runs_dir.iterdir() if p.name.startswith(".") and "staging" in p.name} - staging_before
