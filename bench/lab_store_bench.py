"""The lab's shared warehouse: DuckLake with its catalog in PostgreSQL (kit.store.shared, what the
lab uses) against PostgreSQL tables and against one local DuckDB file (what one machine uses), on the
same runs, side by side in one process run.

    python bench/lab_store_bench.py [--rows 10000000] [--per-run 10000] [--writers 2]

Runs: the recorded tiny_seg run in tests/data (real ETDump rows, no export, no measurement), tiled
to `--per-run` operator events per run and replayed as runs of four devices over nights, written
first to the lab hosts' own DuckDB files (setup, not timed), split over `--writers` hosts.

1. Per-run ingest (ms per run, median): publishing one run at a time from host 0's file into the
   lake (Warehouse.publish: one DuckLake transaction per run over all its tables), COPY of the same
   rows into PostgreSQL tables (one transaction per run, runs keyed by run_id, op_events indexed by
   run_id, fsync on), and Warehouse.insert_run of the run into a local DuckDB file.
2. Batch ingest (rows/s): host 0's runs in one go: one DuckLake transaction (SharedStore.publish_many,
   what a backlog and `sme2 warehouse migrate` use), PostgreSQL as in 1 (per-run transactions: its
   fastest safe path here), Warehouse.insert_each into a local file.
3. Concurrent writers: every host at once, one process each, a run per transaction, into a fresh
   lake / fresh tables.
4. Query latency (median of 5, connection opened per query as `sme2 query` does), over all runs:
   SQL that every engine runs plus the named queries (DuckDB SQL: unchanged on the lake and the local
   file), on the lake as published and after its maintenance (`sme2 warehouse compact`), against
   PostgreSQL and the local file holding every run.
5. Size on disk: the lake's data files + its catalog database, PostgreSQL's database, the local file."""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEVICES = ["bench1", "bench2", "phone", "board"]
PG_TYPES = {"VARCHAR": "text", "INTEGER": "integer", "BIGINT": "bigint", "DOUBLE": "double precision"}
PG_TYPES.update({"BOOLEAN": "boolean", "TIMESTAMP": "timestamp", "JSON": "text", "FLOAT": "real"})
BOTH = {
    "categories by device (runs x category_stats)": (
        "SELECT r.device, c.category, avg(c.median_ms) AS ms FROM runs r JOIN category_stats c USING (run_id)"
        " WHERE c.scheme = 'blog' GROUP BY 1, 2 ORDER BY 1, 2"
    ),
    "operators of one device (runs x op_stats)": (
        "SELECT s.op_type, avg(s.median_ms) AS ms FROM runs r JOIN op_stats s USING (run_id)"
        " WHERE r.device = 'bench1' GROUP BY 1 ORDER BY 2 DESC"
    ),
    "one run's timeline (op_events of a run)": (
        "SELECT iteration, sum(duration_ms) AS ms FROM op_events WHERE run_id = '{run}' GROUP BY 1 ORDER BY 1"
    ),
    "full scan of op_events": "SELECT op_type, count(*) AS n, avg(duration_ms) AS ms FROM op_events GROUP BY 1",
}
NAMED = {"latest-ops": {"variant": "tiny_seg-fp32"}, "category-shares": {"variant": "tiny_seg-fp32"}}


def template(per_run: int):
    """The recorded run's rows, its events tiled to `per_run` rows (iterations repeated)."""
    import pandas as pd

    from kit.store import runrows

    folder = Path(tempfile.mkdtemp()) / "runs" / "recorded"
    shutil.copytree(REPO / "tests/data/tiny_seg-fp32-host", folder)
    rows = runrows.rows_from_run(folder)
    ev = rows.events
    reps = max(1, per_run // len(ev))
    tiled = pd.concat(
        [ev.assign(iteration=ev.iteration + i * ev.iteration.nunique()) for i in range(reps)], ignore_index=True
    )
    return rows, tiled


def replay(t, tiled, i: int, rng):
    from kit.store import runrows

    device = DEVICES[i % len(DEVICES)]
    night = i // len(DEVICES)
    run_id = f"lab-{i:06d}"
    target = f"{device}.sme2-off"
    run = {
        **t.run,
        "run_id": run_id,
        "device": device,
        "target": target,
        "run_key": f"{t.run['variant']}|{target}|small|t1|native",
        "started_at": np.datetime64("2026-01-01") + np.timedelta64(night, "D"),
        "n_op_events": len(tiled),
        "run_dir": None,
    }
    noise = rng.lognormal(0, 0.05, len(tiled))
    return runrows.RunRows(
        run,
        t.samples.assign(run_id=run_id),
        tiled.assign(run_id=run_id, duration_ms=tiled.duration_ms.to_numpy() * noise),
        t.op_stats.assign(run_id=run_id),
        t.category_stats.assign(run_id=run_id),
        t.kernels.assign(run_id=run_id),
        t.artifacts.iloc[0:0],
    )


def published_rows(conn) -> int:
    from kit.store.shared import PUBLISHED

    return sum(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in PUBLISHED)


# ---------------------------------------------------------------- PostgreSQL as the store


def pg_schema(local_db: Path, url: str) -> None:
    import duckdb
    import psycopg2

    from kit.store.shared import PUBLISHED

    conn = duckdb.connect(str(local_db), read_only=True)
    ddl = []
    for table in PUBLISHED:
        cols = [(r[0], r[1]) for r in conn.execute(f"DESCRIBE {table}").fetchall() if r[0] != "run_no"]
        body = ", ".join(f'"{c}" {PG_TYPES.get(t, "text")}' for c, t in cols)
        ddl.append(f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({body})")
    conn.close()
    ddl.append("ALTER TABLE runs ADD PRIMARY KEY (run_id)")
    ddl += [f"CREATE INDEX ON {t} (run_id)" for t in PUBLISHED if t != "runs"]
    pg = psycopg2.connect(url)
    with pg, pg.cursor() as cur:
        for statement in ddl:
            cur.execute(statement)
    pg.close()


def _wait_until(start_at: float | None) -> None:
    """Concurrent writers start together, after their imports (process start is not the store's cost)."""
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))


def pg_copy(args) -> tuple[int, float, int, float, float]:
    """COPY every run of a local file into PostgreSQL, one transaction per run;
    (rows, seconds, errors, start, end)."""
    local_db, url, *rest = args
    import duckdb
    import psycopg2
    import pyarrow.csv as pacsv

    from kit.store.shared import PUBLISHED

    conn = duckdb.connect(str(local_db), read_only=True)
    pg = psycopg2.connect(url)
    run_ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()]
    rows = errors = 0
    _wait_until(rest[0] if rest else None)
    start = time.time()
    t0 = time.perf_counter()
    for run_id in run_ids:
        try:
            with pg, pg.cursor() as cur:
                cur.execute("SELECT 1 FROM runs WHERE run_id = %s", [run_id])
                if cur.fetchone():
                    continue
                for table in PUBLISHED:
                    exclude = " EXCLUDE (run_no)" if table == "runs" else ""
                    arrow = conn.execute(f"SELECT *{exclude} FROM {table} WHERE run_id = ?", [run_id]).to_arrow_table()
                    if arrow.num_rows == 0:
                        continue
                    buf = io.BytesIO()
                    pacsv.write_csv(arrow, buf)
                    buf.seek(0)
                    cols = ", ".join(f'"{c}"' for c in arrow.column_names)
                    cur.copy_expert(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv, HEADER true)", buf)
                    rows += arrow.num_rows
        except psycopg2.Error:
            errors += 1
    seconds = time.perf_counter() - t0
    end = time.time()
    pg.close()
    conn.close()
    return rows, seconds, errors, start, end


def lake_publish(args) -> tuple[int, float, int, float, float, list[float]]:
    """Publish every run of a local file into the lake, a transaction per run;
    (rows, seconds, errors, start, end, seconds per run)."""
    local_db, store, catalog, *rest = args
    import duckdb

    from kit.store.shared import SharedStore

    shared = SharedStore.of(store, catalog)
    conn = duckdb.connect(str(local_db), read_only=True)
    rows = published_rows(conn)
    run_ids = [r[0] for r in conn.execute("SELECT run_id FROM runs ORDER BY started_at").fetchall()]
    _wait_until(rest[0] if rest else None)
    start = time.time()
    t0 = time.perf_counter()
    errors = 0
    each = []
    for run_id in run_ids:
        t1 = time.perf_counter()
        try:
            shared.publish(conn, run_id)
        except Exception:  # noqa: BLE001 - counted, the bench goes on
            errors += 1
        each.append(time.perf_counter() - t1)
    seconds = time.perf_counter() - t0
    conn.close()
    return rows, seconds, errors, start, time.time(), each


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def pg_bytes(url: str, dbname: str) -> int:
    import psycopg2

    with psycopg2.connect(url) as c, c.cursor() as cur:
        cur.execute("SELECT pg_database_size(%s)", [dbname])
        return cur.fetchone()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="operator-event rows in all (default 10 M)")
    ap.add_argument("--per-run", type=int, default=10_000)
    ap.add_argument("--writers", type=int, default=2, help="lab hosts writing at once (default 2: 2 cores here)")
    ap.add_argument("--per-run-sample", type=int, default=50, help="runs timed one by one for the per-run ingest")
    args = ap.parse_args()

    import duckdb
    import psycopg2

    from kit.store import queries
    from kit.store.shared import SharedStore
    from kit.store.warehouse import Warehouse
    from tests import labservices

    work = Path(tempfile.mkdtemp(prefix="sme2-lab-bench-"))
    pg = labservices.Postgres(fsync=True).start()
    try:
        t, tiled = template(args.per_run)
        n_runs = max(args.writers, args.rows // len(tiled))
        rng = np.random.default_rng(0)
        hosts = [work / f"host{h}.duckdb" for h in range(args.writers)]
        t0 = time.perf_counter()
        for h, path in enumerate(hosts):
            Warehouse(path).insert_each(replay(t, tiled, i, rng) for i in range(h, n_runs, args.writers))
        setup_s = time.perf_counter() - t0
        with duckdb.connect(str(hosts[0]), read_only=True) as c:
            host0_rows = published_rows(c)
            host0_runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
        print(
            f"{n_runs} runs, {len(tiled)} op events each, over {args.writers} hosts; host 0: {host0_runs} runs,"
            f" {host0_rows:,} rows (local files written in {setup_s:.1f}s, not timed)"
        )
        out: dict = {"runs": n_runs, "per_run": len(tiled), "writers": args.writers}
        url = pg.url.replace("postgresql+psycopg2://", "postgresql://")  # libpq's form, for psycopg2.connect

        def lake(name: str) -> SharedStore:
            return SharedStore.of(work / name, "postgres:" + pg.create_database(name))

        # 1 + 2. one writer: per run, then batch
        lake1 = lake("lake_one")
        rows, s, err, _, _, each = lake_publish((hosts[0], lake1.path, lake1.catalog))
        assert rows == host0_rows and err == 0
        pg_schema(hosts[0], url)
        rows_pg, s_pg, err_pg, *_ = pg_copy((hosts[0], url))
        assert err_pg == 0
        sample = [replay(t, tiled, i, np.random.default_rng(i)) for i in range(args.per_run_sample)]
        local_one = Warehouse(work / "per-run.duckdb")
        local_each = []
        for r in sample:
            t1 = time.perf_counter()
            local_one.insert_run(r)
            local_each.append(time.perf_counter() - t1)
        out["per_run_ms"] = {
            "ducklake": statistics.median(each) * 1e3,
            "postgres": s_pg / host0_runs * 1e3,
            "local_duckdb": statistics.median(local_each) * 1e3,
        }
        lakeb = lake("lake_batch")
        with duckdb.connect(str(hosts[0]), read_only=True) as c:
            ids = [r[0] for r in c.execute("SELECT run_id FROM runs").fetchall()]
            t1 = time.perf_counter()
            lakeb.publish_many(c, ids)
            batch_s = time.perf_counter() - t1
        local_all = Warehouse(work / "all.duckdb")  # every run: the one-machine reader below
        rng = np.random.default_rng(0)
        t1 = time.perf_counter()
        local_all.insert_each(replay(t, tiled, i, rng) for i in range(n_runs))
        with duckdb.connect(str(local_all.path), read_only=True) as c:
            all_rows = published_rows(c)
        local_batch_rate = all_rows / (time.perf_counter() - t1)
        out["batch_rows_s"] = {
            "ducklake": host0_rows / batch_s,
            "postgres": rows_pg / s_pg,
            "local_duckdb": local_batch_rate,
        }
        print("ingest, one writer        DuckLake+PG    PostgreSQL   local DuckDB")
        pr, br = out["per_run_ms"], out["batch_rows_s"]
        print(f"  per run (ms, median)   {pr['ducklake']:10.1f}   {pr['postgres']:10.1f}   {pr['local_duckdb']:10.1f}")
        print(
            f"  batch (rows/s)         {br['ducklake']:10,.0f}   {br['postgres']:10,.0f}   {br['local_duckdb']:10,.0f}"
        )

        # 3. concurrent writers, fresh targets
        lakec = lake("lake_concurrent")
        pg_schema(hosts[0], url)
        ctx = multiprocessing.get_context("spawn")
        results = {}
        for name, fn, extra in (
            ("ducklake", lake_publish, (lakec.path, lakec.catalog)),
            ("postgres", pg_copy, (url,)),
        ):
            start_at = time.time() + 15  # every writer imported and waiting by then
            with ctx.Pool(args.writers) as pool:
                parts = pool.map(fn, [(h, *extra, start_at) for h in hosts])
            wall = max(p[4] for p in parts) - min(p[3] for p in parts)  # first start to last end
            results[name] = (sum(p[0] for p in parts) / wall, sum(p[2] for p in parts))
            out[f"{name}_{args.writers}w_rows_s"], out[f"{name}_{args.writers}w_errors"] = results[name]
        print(
            f"{args.writers} writers at once (rows/s, first start to last end): DuckLake {results['ducklake'][0]:,.0f}"
            f" ({results['ducklake'][1]} errors), PostgreSQL {results['postgres'][0]:,.0f} ({results['postgres'][1]} errors)"
        )

        # 4. queries over every run
        wh = Warehouse(work / "analysis.duckdb", lakec)  # an analysis host with an empty file
        wh.ensure()
        n = wh.query("SELECT count(*) AS n, count(DISTINCT run_id) AS d FROM runs")
        assert n.n[0] == n.d[0] == n_runs, n
        some_run = wh.query("SELECT min(run_id) AS r FROM runs").r[0]
        with psycopg2.connect(url) as c, c.cursor() as cur:
            cur.execute("ANALYZE")
        sqls = {label: sql.format(run=some_run) for label, sql in BOTH.items()}

        def on_pg(sql):
            with psycopg2.connect(url) as c, c.cursor() as cur:
                cur.execute(sql)
                cur.fetchall()

        def times_on(w: Warehouse) -> dict[str, float]:
            times = {label: timed(lambda sql=sql: w.query(sql)) for label, sql in sqls.items()}
            times.update({f"sme2 query {n}": timed(lambda n=n, p=p: queries.run(w, n, p)) for n, p in NAMED.items()})
            return times

        files_before = sum(len(lakec.files(tb)) for tb in ("op_events", "latency_samples", "op_stats"))
        published = times_on(wh)
        t1 = time.perf_counter()
        done = lakec.compact()
        out["maintenance_s"] = time.perf_counter() - t1
        assert wh.query("SELECT count(*) AS n FROM runs").n[0] == n_runs
        maintained = times_on(wh)
        local = times_on(local_all)
        print(
            f"queries over {n_runs} runs, median of 5, connection per query; the lake as published ({done.files_before}"
            f" data files) and after maintenance ({done.files_after} files, {out['maintenance_s']:.1f}s):"
        )
        print(f"  {'':<45} {'published':>10} {'maintained':>10} {'postgres':>10} {'local file':>10}")
        for label in published:
            pg_ms = timed(lambda sql=sqls[label]: on_pg(sql)) * 1e3 if label in sqls else None
            out[f"q_{label}"] = {
                "ducklake_ms": published[label] * 1e3,
                "ducklake_maintained_ms": maintained[label] * 1e3,
                "postgres_ms": pg_ms,
                "local_duckdb_ms": local[label] * 1e3,
            }
            pg_text = f"{pg_ms:7.1f} ms" if pg_ms is not None else "  (n/a)   "
            print(
                f"  {label:<45} {published[label] * 1e3:7.1f} ms {maintained[label] * 1e3:7.1f} ms {pg_text}"
                f" {local[label] * 1e3:7.1f} ms"
            )

        # 5. size on disk
        out["bytes"] = {
            "ducklake_data": folder_bytes(lakec.data),
            "ducklake_catalog": pg_bytes(url, "lake_concurrent"),
            "postgres": pg_bytes(url, "dagster"),
            "local_duckdb": local_all.path.stat().st_size,
        }
        b = {k: v / 1e6 for k, v in out["bytes"].items()}
        print(
            f"size on disk (MB): DuckLake data {b['ducklake_data']:.0f} + catalog {b['ducklake_catalog']:.0f},"
            f" PostgreSQL {b['postgres']:.0f}, local DuckDB file {b['local_duckdb']:.0f}"
        )
        out["files_before_maintenance"] = files_before
        print(json.dumps(out, default=float))
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
