"""The lab's shared warehouse: Parquet files in a shared folder (kit.store.shared, what the lab
uses) against PostgreSQL as the store, on the same runs, in one process run side by side.

    python bench/lab_store_bench.py [--rows 1000000] [--per-run 10000] [--writers 2]

Runs: the recorded tiny_seg run in tests/data (real ETDump rows, no export, no measurement),
tiled to `--per-run` operator events per run and replayed as runs of four devices over nights,
written first to the lab hosts' own DuckDB files (setup, not timed), split over `--writers` hosts.

1. Ingest, one writer: publishing host 0's runs into the store (Warehouse.publish: each run's
   tables read from its local file, one Parquet file per table, temp name + fsync + rename),
   against COPY of the same rows, read the same way, into PostgreSQL tables (one transaction per
   run, runs keyed by run_id, op_events indexed by run_id), fsync on.
2. Concurrent writers: every host at once, one process each, into a fresh store / fresh tables.
3. Query latency (median of 5, connection opened per query as `sme2 query` does), over all runs,
   from an analysis host whose own file is empty: SQL that both engines run, plus the named
   queries (DuckDB SQL: they run over the store unchanged; PostgreSQL would need them rewritten),
   on the store as published (one file per table per run) and after `sme2 warehouse compact`
   (one file per table per device and month; the replayed runs are one per device per night)."""

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

    from kit.store import warehouse

    folder = Path(tempfile.mkdtemp()) / "runs" / "recorded"
    shutil.copytree(REPO / "tests/data/tiny_seg-fp32-host", folder)
    rows = warehouse.rows_from_run(folder)
    ev = rows.events
    reps = max(1, per_run // len(ev))
    tiled = pd.concat(
        [ev.assign(iteration=ev.iteration + i * ev.iteration.nunique()) for i in range(reps)], ignore_index=True
    )
    return rows, tiled


def replay(t, tiled, i: int, rng):
    from kit.store import warehouse

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
    return warehouse.RunRows(
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


def parquet_publish(args) -> tuple[int, float, int, float, float]:
    local_db, store, *rest = args
    import duckdb

    from kit.store.shared import SharedStore
    from kit.store.warehouse import Warehouse

    wh = Warehouse(Path(local_db), SharedStore.of(store))
    with duckdb.connect(str(local_db), read_only=True) as conn:
        rows = published_rows(conn)
    _wait_until(rest[0] if rest else None)
    start = time.time()
    t0 = time.perf_counter()
    errors = 0
    try:
        wh.publish()
    except Exception:  # noqa: BLE001 - counted, the bench goes on
        errors += 1
    return rows, time.perf_counter() - t0, errors, start, time.time()


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="operator-event rows in all (default 1 M)")
    ap.add_argument("--per-run", type=int, default=10_000)
    ap.add_argument("--writers", type=int, default=2, help="lab hosts writing at once (default 2: 2 cores here)")
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
        total_rows = 0
        for path in hosts:
            with duckdb.connect(str(path), read_only=True) as c:
                total_rows += published_rows(c)
        print(
            f"{n_runs} runs, {len(tiled)} op events each, {total_rows:,} rows over {args.writers} hosts"
            f" (local files written in {setup_s:.1f}s, not timed)"
        )
        out: dict = {"runs": n_runs, "per_run": len(tiled), "rows": total_rows, "writers": args.writers}

        # 1. one writer
        rows, s, err, *_ = parquet_publish((hosts[0], work / "store1"))
        out["parquet_1w_rows_s"] = rows / s
        url = pg.url.replace("postgresql+psycopg2://", "postgresql://")  # libpq's form, for psycopg2.connect
        pg_schema(hosts[0], url)
        rows_pg, s_pg, err_pg, *_ = pg_copy((hosts[0], url))
        out["postgres_1w_rows_s"] = rows_pg / s_pg
        print(
            f"1 writer  : parquet {rows / s:>10,.0f} rows/s ({s:.1f}s)   postgres {rows_pg / s_pg:>10,.0f} rows/s ({s_pg:.1f}s)"
        )
        assert rows == host0_rows and err == err_pg == 0

        # 2. concurrent writers, fresh targets
        store = work / "store"
        pg_schema(hosts[0], url)
        ctx = multiprocessing.get_context("spawn")
        results = {}
        for name, fn, arg in (("parquet", parquet_publish, store), ("postgres", pg_copy, url)):
            start_at = time.time() + 15  # every writer imported and waiting by then
            with ctx.Pool(args.writers) as pool:
                parts = pool.map(fn, [(h, arg, start_at) for h in hosts])
            wall = max(p[4] for p in parts) - min(p[3] for p in parts)  # first start to last end
            results[name] = (sum(p[0] for p in parts) / wall, sum(p[2] for p in parts), wall)
        for name, (rate, errors, _wall) in results.items():
            out[f"{name}_{args.writers}w_rows_s"] = rate
            out[f"{name}_{args.writers}w_errors"] = errors
        print(
            f"{args.writers} writers : parquet {results['parquet'][0]:>10,.0f} rows/s ({results['parquet'][1]} errors)"
            f"   postgres {results['postgres'][0]:>10,.0f} rows/s ({results['postgres'][1]} errors)  (all rows / first start to last end)"
        )

        # 3. queries from an analysis host with an empty file
        shared = SharedStore.of(store)
        wh = Warehouse(work / "analysis.duckdb", shared)
        wh.ensure()
        n = wh.query("SELECT count(*) AS n, count(DISTINCT run_id) AS d FROM runs")
        assert n.n[0] == n.d[0] == n_runs, n
        some_run = wh.query("SELECT min(run_id) AS r FROM runs").r[0]
        with psycopg2.connect(url) as c, c.cursor() as cur:
            cur.execute("ANALYZE")
        out["files"] = sum(1 for _ in store.rglob("*.parquet"))
        sqls = {label: sql.format(run=some_run) for label, sql in BOTH.items()}

        def on_pg(sql):
            with psycopg2.connect(url) as c, c.cursor() as cur:
                cur.execute(sql)
                cur.fetchall()

        def parquet_times() -> dict[str, float]:
            times = {label: timed(lambda sql=sql: wh.query(sql)) for label, sql in sqls.items()}
            times.update({f"sme2 query {n}": timed(lambda n=n, p=p: queries.run(wh, n, p)) for n, p in NAMED.items()})
            return times

        per_run = parquet_times()
        t0 = time.perf_counter()
        done = shared.compact(by="month")
        out["compact_s"] = time.perf_counter() - t0
        out["files_compacted"] = sum(1 for _ in store.rglob("*.parquet"))
        assert wh.query("SELECT count(*) AS n FROM runs").n[0] == n_runs
        compacted = parquet_times()
        print(
            f"queries over {n_runs} runs, median of 5, connection opened per query; Parquet as published"
            f" ({out['files']} files) and after `sme2 warehouse compact` ({out['files_compacted']} files,"
            f" {done.partitions} device-months, compaction {out['compact_s']:.1f}s):"
        )
        print(f"  {'':<45} {'per run':>10} {'compacted':>10} {'postgres':>10}")
        for label in per_run:
            pg_ms = timed(lambda sql=sqls[label]: on_pg(sql)) * 1e3 if label in sqls else None
            out[f"q_{label}"] = {
                "parquet_ms": per_run[label] * 1e3,
                "parquet_compacted_ms": compacted[label] * 1e3,
                "postgres_ms": pg_ms,
            }
            pg_text = f"{pg_ms:8.1f} ms" if pg_ms is not None else "  (DuckDB SQL: not portable as is)"
            print(f"  {label:<45} {per_run[label] * 1e3:7.1f} ms {compacted[label] * 1e3:7.1f} ms {pg_text}")
        print(json.dumps(out, default=float))
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
