"""A year of nightly runs: ~100 M op-event rows, the named queries and full scans over it, and the
three ways to keep it (raw rows forever; per-run aggregates forever plus raw rows for N nights;
old raw rows as Parquet partitions read by DuckDB), each measured on the same data in one run.

    python bench/year_bench.py [--nights 365] [--runs-per-night 23] [--keep-nights 30] [--home DIR]

One night of real runs (tiny_seg fp32 and int8 traces profiled on the host, replayed on several
targets) is ingested through Warehouse.insert_each; the other nights are copies of it made inside
DuckDB (new run ids, run numbers and dates, durations drifting by night), which is how a year of
data can be built in minutes here. Every named query then runs over the year."""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore")

QUERIES = {
    "latest-ops": {"variant": "tiny_seg-fp32", "target": "phone.sme2-on"},
    "op-history": {"op": "Convolution", "variant": "tiny_seg-int8", "target": "phone.sme2-on"},
    "category-shares": {"variant": "tiny_seg-int8"},
    "biggest-changes": {"variant": "tiny_seg-fp32", "target": "board.sme2-off"},
    "runs": {"limit": "50"},
}
SCAN = "SELECT op_type, approx_quantile(duration_ms, 0.5) AS p50, count(*) AS n FROM op_events GROUP BY op_type"
# Tables with one row per run or per run x something, copied night by night.
PER_RUN = ("latency_samples", "op_stats", "category_stats", "kernels")


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def build_year(root, nights: int, per_night: int, iterations: int) -> dict:
    import duckdb

    from warehouse_bench import TARGETS, real_templates, replay  # bench/ is on sys.path when run
    from kit.store import warehouse

    templates = real_templates(root, iterations)
    rng = np.random.default_rng(0)
    newest_night = np.datetime64("today")  # the copies go back from here, one night each
    seeds = []
    for i in range(per_night):
        r = replay(templates, i, rng, prefix="night0")
        threads = i // (len(TARGETS) * len(templates)) + 1  # distinct keys beyond 10 runs a night
        r.run.update(
            started_at=newest_night,
            threads=threads,
            run_key=r.run["run_key"].replace("|t1|", f"|t{threads}|"),
        )
        seeds.append(r)
    wh = warehouse.Warehouse.at(root)
    t0 = time.perf_counter()
    wh.insert_each(seeds)
    seed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    conn = duckdb.connect(str(root.warehouse))
    cols = {t: [r[0] for r in conn.execute(f"DESCRIBE {t}").fetchall()] for t in ("runs", *PER_RUN)}
    # Night n (1..nights-1) is night 0 moved n days earlier, with its own run ids and numbers
    # (drawn from the warehouse's run number sequence, as ingestion draws them).
    conn.execute(
        f"""CREATE TEMP TABLE night AS SELECT run_no AS seed, n.range AS n,
            CAST(nextval('run_no_seq') AS INTEGER) AS run_no FROM runs, range(1, {nights}) n"""
    )
    run_sel = {c: f"r.{c}" for c in cols["runs"]}
    run_sel.update(
        run_id="r.run_id || '-n' || m.n",
        run_no="m.run_no",
        started_at="r.started_at - to_days(CAST(m.n AS INTEGER))",
        finished_at="r.finished_at - to_days(CAST(m.n AS INTEGER))",
        e2e_median_ms="r.e2e_median_ms * (1 - 0.0005 * m.n)",
    )
    conn.execute(
        f"INSERT INTO runs SELECT {', '.join(run_sel[c] for c in cols['runs'])} FROM runs r JOIN night m ON m.seed = r.run_no"
    )
    for table in PER_RUN:
        sel = ", ".join("run_id || '-n' || n.range" if c == "run_id" else c for c in cols[table])
        conn.execute(f"INSERT INTO {table} SELECT {sel} FROM {table}, range(1, {nights}) n")
    conn.execute(
        """INSERT INTO op_event_slots SELECT m.run_no, slot, op_type, event_name, delegated, backend, instruction_id,
            category, fine_category, kernel_hint FROM op_event_slots s JOIN night m ON m.seed = s.run_no"""
    )
    conn.execute(
        """INSERT INTO op_event_times SELECT m.run_no, iteration, seq, slot, start_us, duration_ms * (1 - 0.0005 * m.n)
            FROM op_event_times t JOIN night m ON m.seed = t.run_no ORDER BY 1, 2, 3"""
    )
    conn.execute("CHECKPOINT")
    conn.close()
    copy_s = time.perf_counter() - t0
    return {"seed_runs": per_night, "seed_s": seed_s, "copy_s": copy_s}


def query_times(wh) -> dict[str, float]:
    """Each named query as `sme2 query` runs it: open the file read-only, query, close."""
    from kit.store import queries

    return {name: timed(lambda n=name, p=p: queries.run(wh, n, p))[0] for name, p in QUERIES.items()}


def open_time(wh) -> float:
    """Opening and closing a read-only connection alone: the part of every query that is DuckDB
    starting up, the same for a warehouse of 10 rows and of 100 M."""

    def open_close():
        with wh.read() as c:
            c.execute("SELECT 1").fetchall()

    return timed(open_close, repeat=5)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nights", type=int, default=365)
    ap.add_argument("--runs-per-night", type=int, default=23, help="23 x 365 nights x ~13k rows = ~100 M")
    ap.add_argument("--keep-nights", type=int, default=30, help="raw rows kept by the retention option")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--home", default=None)
    a = ap.parse_args()

    import duckdb

    from kit.core.home import DataRoot
    from kit.store import warehouse

    root = DataRoot.resolve(a.home)
    for f in (root.warehouse, Path(str(root.warehouse) + ".wal")):
        f.unlink(missing_ok=True)
    built = build_year(root, a.nights, a.runs_per_night, a.iterations)
    wh = warehouse.Warehouse.at(root)
    with wh.read() as c:
        rows = c.execute("SELECT count(*) FROM op_event_times").fetchone()[0]
        runs = c.execute("SELECT count(*) FROM runs").fetchone()[0]
    size_gb = root.warehouse.stat().st_size / 1e9
    print(
        f"a year: {a.nights} nights x {a.runs_per_night} runs = {runs:,} runs, {rows:,} op-event rows, file {size_gb:.2f} GB"
        f" (seed night ingested in {built['seed_s']:.1f} s, other nights copied in DuckDB in {built['copy_s']:.0f} s)"
    )

    # Option 1: raw rows forever.
    raw_q = query_times(wh)
    raw_scan, _ = timed(lambda: wh.sql(SCAN), repeat=2)
    raw_count, _ = timed(lambda: wh.sql("SELECT count(*) FROM op_events"), repeat=2)
    one_run, _ = timed(
        lambda: wh.sql(
            "SELECT iteration, sum(duration_ms) FROM op_events WHERE run_id = (SELECT max(run_id) FROM runs) GROUP BY ALL"
        )
    )

    # Option 3: every night's raw rows as Parquet, one folder per month, read by DuckDB.
    parquet = root.path / "op_events_parquet"
    shutil.rmtree(parquet, ignore_errors=True)
    t0 = time.perf_counter()
    with duckdb.connect(str(root.warehouse), read_only=True) as c:
        c.execute(
            f"""COPY (SELECT e.*, strftime(r.started_at, '%Y-%m') AS month
                      FROM op_events e JOIN (SELECT run_id, started_at FROM runs) r USING (run_id))
                TO '{parquet}' (FORMAT parquet, PARTITION_BY (month))"""
        )
    export_s = time.perf_counter() - t0
    parquet_gb = sum(f.stat().st_size for f in parquet.rglob("*.parquet")) / 1e9
    scan_pq = SCAN.replace("FROM op_events", f"FROM read_parquet('{parquet}/**/*.parquet', hive_partitioning = true)")
    with duckdb.connect() as c:
        pq_scan, _ = timed(lambda: c.execute(scan_pq).fetchall(), repeat=2)
        pq_month, _ = timed(
            lambda: c.execute(
                f"SELECT op_type, approx_quantile(duration_ms, 0.5) FROM read_parquet('{parquet}/**/*.parquet', hive_partitioning = true) WHERE month = (SELECT max(month) FROM read_parquet('{parquet}/**/*.parquet', hive_partitioning = true)) GROUP BY 1"
            ).fetchall(),
            repeat=2,
        )

    # Option 2: aggregates forever, raw rows for the last N nights (sme2 warehouse prune).
    t0 = time.perf_counter()
    pruned = wh.prune_events(a.keep_nights)
    prune_s = time.perf_counter() - t0
    kept_q = query_times(wh)
    kept_scan, _ = timed(lambda: wh.sql(SCAN), repeat=2)
    with wh.read() as c:
        kept = c.execute("SELECT count(*) FROM op_event_times").fetchone()[0]

    print(f"\n{'named query':18s} {'raw forever':>12s} {'aggregates + ' + str(a.keep_nights) + ' nights raw':>28s}")
    for name in QUERIES:
        print(f"{name:18s} {raw_q[name] * 1e3:9.0f} ms {kept_q[name] * 1e3:25.0f} ms")
    worst = max(max(raw_q.values()), max(kept_q.values())) * 1e3
    opening = open_time(wh) * 1e3
    print(f"(opening the file read-only and closing it, no query: {opening:.0f} ms of each)")
    print(f"slowest named query {worst:.0f} ms; goal < 200 ms: {'met' if worst < 200 else 'NOT met'}")
    print(
        f"\nfull scan (median per op type) over op_events:"
        f"\n  raw forever, {rows:,} rows                 {raw_scan:7.2f} s   (count(*) {raw_count:.2f} s; one run's per-iteration sums {one_run * 1e3:.0f} ms)"
        f"\n  aggregates + {a.keep_nights} nights raw, {kept:,} rows  {kept_scan:7.2f} s   (prune of {pruned:,} rows took {prune_s:.1f} s)"
        f"\n  Parquet by month, {parquet_gb:.2f} GB             {pq_scan:7.2f} s   (one month {pq_month:.2f} s; export took {export_s:.0f} s)"
        f"\nwarehouse file {size_gb:.2f} GB with every raw row"
    )
    shutil.rmtree(parquet, ignore_errors=True)


if __name__ == "__main__":
    main()
