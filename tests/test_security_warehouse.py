"""Security and data integrity of the warehouse, for real: a real DuckDB file over real profiled
run folders, the real CLI in a subprocess, and a real full file system (a small tmpfs).

- `sme2 sql` is read-only in fact: no file reads or writes (also not through EXPLAIN ANALYZE),
  no ATTACH / INSTALL / LOAD / SET, one SELECT only, never a read-write connection.
- `sme2 warehouse rebuild` skips bad run folders, ingests the rest and lists the bad ones.
- `sme2 import-arm-kit` validates everything first and is all-or-nothing.
- A full disk is "disk full at <path>", never a masking traceback, and leaves nothing partial."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from kit.core import atomic
from kit.core.errors import Sme2Error, WarehouseError
from kit.core.home import DataRoot
from kit.report import armkit
from kit.store import ingest, runrows, usersql
from kit.store.schema import STORED_AS, TABLES
from kit.store.warehouse import Warehouse
from tests.disks import fill, small_disk

pytestmark = pytest.mark.slow  # real CLI subprocesses and tmpfs-backed full disks (minutes; the tmpfs tests need root)

SECRET = "sme2-secret-line-4711"


def copy_run(src: Path, parent: Path, name: str) -> Path:
    """A copy of a real run folder under a new run id (the folder's name)."""
    dst = Path(parent) / name
    shutil.copytree(src, dst)
    rec = json.loads((dst / "run.json").read_text())
    rec["run_id"] = name
    (dst / "run.json").write_text(json.dumps(rec))
    return dst


def cli(*args: str, home: DataRoot) -> subprocess.CompletedProcess:
    """The real `sme2` command line, in its own process."""
    env = {**os.environ, "SME2_HOME": str(home.path)}
    return subprocess.run(
        [sys.executable, "-m", "kit.cli", *args, "--home", str(home.path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


# ---------------------------------------------------------------- sme2 sql


@pytest.fixture(scope="module")
def sql_home(tmp_path_factory, host_run) -> DataRoot:
    """A warehouse holding one real run, and next to it files user SQL must not reach."""
    base = tmp_path_factory.mktemp("sqlsec")
    root = DataRoot.resolve(base / "home")
    ingest.ingest_run(root, copy_run(host_run.run_dir, root.runs, "sql-run-1"))
    (base / "secret.csv").write_text(f"a,b\n{SECRET},1\n")
    (base / "secret.txt").write_text(SECRET + "\n")
    with duckdb.connect() as c:  # a real parquet file, written outside the warehouse
        c.execute(f"COPY (SELECT '{SECRET}' AS s) TO '{base / 'secret.parquet'}' (FORMAT PARQUET)")
    return root


def test_plain_selects_and_explain_of_a_select_work(sql_home):
    wh = Warehouse.at(sql_home)
    assert wh.sql("SELECT count(*) AS n FROM runs").n[0] == 1
    assert usersql.run_user_sql(sql_home.warehouse, "SELECT run_id FROM current_runs").run_id.tolist() == ["sql-run-1"]
    assert len(wh.sql("SELECT * FROM op_events JOIN runs USING (run_id)")) > 0
    assert "physical_plan" in wh.sql("EXPLAIN SELECT * FROM current_runs").iloc[0, 0]
    assert len(wh.sql("EXPLAIN ANALYZE SELECT count(*) FROM op_stats")) == 1
    assert "column_name" in wh.sql("DESCRIBE runs").columns
    # Only the warehouse's own database is visible (plus DuckDB's internal system/temp catalogs).
    dbs = wh.sql("SELECT database_name FROM duckdb_databases() WHERE NOT internal").database_name.tolist()
    assert dbs == [sql_home.warehouse.stem]


def test_explain_analyze_copy_writes_no_file(sql_home, tmp_path):
    wh = Warehouse.at(sql_home)
    target = tmp_path / "leak.csv"
    for text in (
        f"EXPLAIN ANALYZE COPY (SELECT * FROM runs) TO '{target}'",
        f"EXPLAIN (ANALYZE) COPY (SELECT 1) TO '{target}'",
        f"COPY (SELECT 1) TO '{target}'",
        f"EXPORT DATABASE '{tmp_path / 'dump'}'",
    ):
        with pytest.raises(WarehouseError, match="read-only; refused") as e:
            wh.sql(text)
        assert "allowed: one SELECT" in e.value.hint
    assert not target.exists() and not (tmp_path / "dump").exists()
    with pytest.raises(WarehouseError, match="refused EXPLAIN of COPY"):
        wh.sql(f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'")


def test_table_functions_cannot_read_files(sql_home):
    base = sql_home.path.parent
    wh = Warehouse.at(sql_home)
    for text in (
        f"SELECT * FROM read_csv('{base / 'secret.csv'}')",
        f"SELECT * FROM read_text('{base / 'secret.txt'}')",
        f"SELECT * FROM read_blob('{base / 'secret.txt'}')",
        f"SELECT * FROM glob('{base}/*')",
        "SELECT * FROM glob('/root/*')",
        f"SELECT * FROM read_parquet('{base / 'secret.parquet'}')",
        f"SELECT * FROM '{base / 'secret.csv'}'",  # replacement scan of a bare path
        f"EXPLAIN ANALYZE SELECT * FROM read_text('{base / 'secret.txt'}')",
        "SELECT * FROM read_text('/etc/passwd')",
    ):
        with pytest.raises(WarehouseError, match="cannot reach files"):
            wh.sql(text)


def test_settings_attach_and_extensions_are_refused(sql_home, tmp_path):
    wh = Warehouse.at(sql_home)
    other = tmp_path / "other.duckdb"
    for text, refused in (
        ("SET enable_external_access = true", "SET"),
        ("RESET enable_external_access", "RESET"),
        ("PRAGMA enable_profiling", "PRAGMA"),
        (f"ATTACH '{other}' AS other", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "LOAD"),
        ("CALL pragma_version()", "CALL"),
        ("CREATE TEMP TABLE t AS SELECT 1", "CREATE"),
        ("SELECT 1; DELETE FROM runs", "2 statements"),
        ("", "0 statements"),
    ):
        with pytest.raises(WarehouseError, match=f"read-only; refused {refused}"):
            wh.sql(text)
    assert not other.exists()
    # The settings are really in force: user SQL sees them off and locked.
    got = wh.sql(
        "SELECT current_setting('enable_external_access') AS ext, current_setting('lock_configuration') AS locked"
    )
    assert (bool(got.ext[0]), bool(got.locked[0])) == (False, True)


def test_the_connection_itself_is_locked_down(sql_home, tmp_path):
    """Second layer, without the statement check: the connection refuses on its own."""
    target = tmp_path / "x.csv"
    with usersql.user_sql_connection(sql_home.warehouse) as conn:
        for text in (
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "SET autoload_known_extensions = true",
            f"COPY (SELECT 1) TO '{target}'",
            f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'",
            f"ATTACH '{tmp_path / 'o.duckdb'}'",
            "INSTALL httpfs",
            "DELETE FROM runs",
        ):
            with pytest.raises(duckdb.Error):
                conn.execute(text)
    assert not target.exists() and not (tmp_path / "o.duckdb").exists()
    assert Warehouse.at(sql_home).sql("SELECT count(*) AS n FROM runs").n[0] == 1


def test_python_objects_are_not_visible(sql_home):
    """DuckDB's Python client answers an unknown table name with a DataFrame of that name from the
    calling frame; on the guarded connection it must not."""
    secret_frame = pd.DataFrame({"s": [SECRET]})  # noqa: F841 (found by name, by DuckDB)
    with duckdb.connect() as plain:
        assert plain.execute("SELECT s FROM secret_frame").fetchall() == [(SECRET,)]  # the default
    with usersql.user_sql_connection(sql_home.warehouse) as conn:
        with pytest.raises(duckdb.CatalogException):
            conn.execute("SELECT s FROM secret_frame")


def test_user_sql_never_widens_to_a_read_write_connection(sql_home):
    """This process holding the file read-write: the guard waits, then refuses; it never reuses
    the writable instance (which the ordinary reader does)."""
    writer = duckdb.connect(str(sql_home.warehouse))
    try:
        with pytest.raises(WarehouseError, match="already has the warehouse .* open with other settings"):
            usersql.run_user_sql(sql_home.warehouse, "SELECT count(*) FROM runs", wait_s=0.5)
    finally:
        writer.close()
    assert usersql.run_user_sql(sql_home.warehouse, "SELECT count(*) AS n FROM runs").n[0] == 1


def test_cli_sql_refuses_attacks_and_answers_selects(sql_home, tmp_path):
    target = tmp_path / "cli-leak.csv"
    p = cli("sql", f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'", home=sql_home)
    assert p.returncode == 2 and "refused EXPLAIN of COPY" in p.stderr and "Traceback" not in p.stderr
    assert not target.exists()
    p = cli("sql", f"SELECT * FROM read_text('{sql_home.path.parent / 'secret.txt'}')", home=sql_home)
    assert p.returncode == 2 and "cannot reach files" in p.stderr and SECRET not in p.stdout + p.stderr
    p = cli("sql", "SET enable_external_access = true", home=sql_home)
    assert p.returncode == 2 and "refused SET" in p.stderr
    p = cli("sql", "SELECT count(*) AS n FROM current_runs", "-f", "json", home=sql_home)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"n": 1}]


# ---------------------------------------------------------------- rebuild and Arm-kit import


def test_rebuild_skips_bad_folders_and_ingests_the_rest(tmp_path, host_run):
    root = DataRoot.resolve(tmp_path / "home")
    # Bad folders sort first: one bad folder must not stop the ones after it.
    bad_json = copy_run(host_run.run_dir, root.runs, "a-bad-json")
    (bad_json / "run.json").write_text('{"run_id": "a-bad-json", ')
    truncated = copy_run(host_run.run_dir, root.runs, "b-truncated-etdump")
    data = (truncated / "etdump.etdp").read_bytes()
    (truncated / "etdump.etdp").write_bytes(data[: len(data) // 2])
    (root.runs / "c-no-run-json").mkdir()
    good = [copy_run(host_run.run_dir, root.runs, f"z-good-{i}") for i in (1, 2)]

    p = cli("warehouse", "rebuild", home=root)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    assert "2 run(s) added" in p.stdout
    assert "3 run folder(s) skipped" in p.stderr
    assert f"{bad_json}: " in p.stderr and "not valid JSON" in p.stderr
    assert f"{truncated}: " in p.stderr and "truncated" in p.stderr
    assert "c-no-run-json: no run.json" in p.stderr
    wh = Warehouse.at(root)
    assert sorted(wh.query("SELECT run_id FROM runs").run_id) == [g.name for g in good]
    n_ops = len(host_run.trace.operators)
    assert (wh.query("SELECT count(*) AS n FROM op_events GROUP BY run_id").n == n_ops).all()

    # The kit function says the same, and a second rebuild adds nothing.
    again = ingest.rebuild(root)
    assert again.added == [] and sorted(again.present) == [g.name for g in good]
    assert set(again.bad) == {str(bad_json), str(truncated), str(root.runs / "c-no-run-json")}


def make_kit_folder(base: Path, host_run, bad: str | None = None) -> Path:
    """An Arm-kit run folder (runs/<platform>/) with a good SME2-off ETDump and a second one for
    SME2 on; `bad` spoils the second: "etdump" truncates it, "stats" puts text in its latencies."""
    kit_dir = base / "out_tiny_seg" / "runs" / "mac"
    lat = json.loads((host_run.run_dir / "timing.json").read_text())["latencies_ms"]
    for exp in ("sme2_off", "sme2_on"):
        (kit_dir / exp).mkdir(parents=True)
        stem = f"tiny_seg_xnnpack_fp32_{exp}_t1"
        data = (host_run.run_dir / "etdump.etdp").read_bytes()
        if exp == "sme2_on" and bad == "etdump":
            data = data[: len(data) - 100]
        (kit_dir / exp / f"{stem}.etdump").write_bytes(data)
        stats = {"latencies_ms": lat, "median_ms": float(np.median(lat))}
        if exp == "sme2_on" and bad == "stats":
            stats["latencies_ms"] = ["fast", 1.0]
        (kit_dir / exp / f"{stem}_exec_all_runs_timeline_robust_stats.json").write_text(json.dumps(stats))
    (kit_dir / "manifest.json").write_text(json.dumps({"device": "Mac M4", "platform": "macos-arm64"}))
    return kit_dir


def nothing_imported(root: DataRoot) -> bool:
    """No run folder (not even a staging one) and no warehouse row."""
    leftovers = list(root.runs.iterdir()) if root.runs.exists() else []
    if leftovers:
        return False
    if not root.warehouse.exists():
        return True
    return Warehouse.at(root).query("SELECT count(*) AS n FROM runs").n[0] == 0


@pytest.mark.parametrize("bad", ["etdump", "stats"])
def test_arm_kit_import_is_all_or_nothing(tmp_path, host_run, bad):
    root = DataRoot.resolve(tmp_path / "home")
    kit_dir = make_kit_folder(tmp_path, host_run, bad)
    with pytest.raises(Sme2Error, match="cannot import .*sme2_on_t1.etdump") as e:
        armkit.import_folder(root, kit_dir, warmup=3)
    assert "nothing of it was imported" in e.value.hint
    assert nothing_imported(root)
    # A later rebuild has nothing broken to trip over.
    assert ingest.rebuild(root).bad == {}

    # The real CLI: a clear message, exit 2, still nothing imported.
    p = cli("import-arm-kit", str(kit_dir), home=root)
    assert p.returncode == 2 and "cannot import" in p.stderr and "Traceback" not in p.stderr
    assert nothing_imported(root)

    # With the bad file fixed, both runs come in, and a re-import adds nothing.
    shutil.rmtree(kit_dir.parents[1])
    kit_dir = make_kit_folder(tmp_path, host_run)
    ids = armkit.import_folder(root, kit_dir, warmup=3)
    assert len(ids) == 2 and armkit.import_folder(root, kit_dir, warmup=3) == ids
    wh = Warehouse.at(root)
    runs = wh.query("SELECT run_id, target, run_dir FROM runs ORDER BY target")
    assert runs.target.tolist() == ["mac-m4.sme2-off", "mac-m4.sme2-on"]
    assert all(Path(d) == root.runs / i for d, i in zip(runs.run_dir, runs.run_id))  # committed paths
    arts = wh.query("SELECT path FROM artifacts").path
    assert all(Path(a).exists() and "staging" not in a for a in arts)
    assert sorted(p.name for p in root.runs.iterdir()) == sorted(ids)


def test_arm_kit_import_heals_a_folder_an_old_import_left_broken(tmp_path, host_run):
    """The bug this fixes left committed folders that fail ingestion; a re-import replaces them."""
    root = DataRoot.resolve(tmp_path / "home")
    kit_dir = make_kit_folder(tmp_path, host_run)
    ids = armkit.import_folder(root, kit_dir, warmup=3)
    broken = root.runs / ids[0]
    (broken / "timing.json").write_text('{"latencies_ms": ["fast"]}')
    with Warehouse.at(root).write() as conn:  # as if its ingestion had failed
        for events in ("op_event_times", "op_event_slots"):  # op_events is a view over these
            conn.execute(f"DELETE FROM {events} WHERE run_no IN (SELECT run_no FROM runs WHERE run_id = ?)", [ids[0]])
        for table in set(TABLES) - set(STORED_AS):  # the rest are views
            conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [ids[0]])
    assert armkit.import_folder(root, kit_dir, warmup=3) == ids
    assert Warehouse.at(root).query("SELECT count(*) AS n FROM runs").n[0] == 2
    assert ingest.rebuild(root).bad == {}


# ---------------------------------------------------------------- a full disk


def table_counts(wh: Warehouse, run_id: str) -> dict[str, int]:
    with wh.read() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE run_id = ?", [run_id]).fetchone()[0] for t in TABLES}


def test_insert_on_a_full_disk_says_disk_full_and_keeps_nothing_partial(tmp_path, host_run):
    src = tmp_path / "runs-src"
    src.mkdir()
    first, second = (copy_run(host_run.run_dir, src, f"disk-run-{i}") for i in (1, 2))
    with small_disk(tmp_path / "disk", "16m") as disk:
        wh = Warehouse(disk / "warehouse.duckdb")
        assert wh.insert_run(runrows.rows_from_run(first)) is True
        before = table_counts(wh, first.name)
        rows = runrows.rows_from_run(second)
        filler = fill(disk)
        with pytest.raises(WarehouseError, match=f"disk full at {wh.path}") as e:
            wh.insert_run(rows)
        assert "no transaction is active" not in str(e.value) and "free space" in e.value.hint
        filler.unlink()
        assert table_counts(wh, first.name) == before  # earlier rows intact
        assert set(table_counts(wh, second.name).values()) == {0}  # nothing of the failed run
        assert wh.insert_run(rows) is True  # and nothing half-there blocks it later
        assert table_counts(wh, second.name) == before  # a copy of the same run: the same row counts


def test_atomic_write_on_a_full_disk_names_the_file_and_leaves_no_temp(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        target = disk / "reports" / "table.json"
        atomic.write_json(target, {"version": 1})
        filler = fill(disk)
        with pytest.raises(Sme2Error, match=f"disk full at {target}") as e:
            atomic.write_bytes(target, b"x" * 300_000)
        assert isinstance(e.value, OSError)  # callers that tolerate a failed write still can
        assert json.loads(target.read_text()) == {"version": 1}  # the earlier version stays
        assert sorted(p.name for p in target.parent.iterdir()) == ["table.json"]  # no temp file
        filler.unlink()
        atomic.write_bytes(target, b"{}")
        assert target.read_text() == "{}"


def test_arm_kit_import_on_a_full_disk_says_so_and_imports_nothing(tmp_path, host_run):
    kit_dir = make_kit_folder(tmp_path, host_run)
    with small_disk(tmp_path / "disk", "4m") as disk:
        root = DataRoot.resolve(disk / "home")
        root.runs.mkdir(parents=True, exist_ok=True)
        filler = fill(disk)
        with pytest.raises(Sme2Error, match="disk full at") as e:
            armkit.import_folder(root, kit_dir, warmup=3)
        assert "free space" in e.value.hint
        assert nothing_imported(root)
        filler.unlink()
        assert len(armkit.import_folder(root, kit_dir, warmup=3)) == 2
