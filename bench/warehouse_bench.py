"""Warehouse ingestion and queries at scale, each measured side by side with plain DuckDB doing the
same work in the same run (the engine's own limit on this machine, under the same load).

    python bench/warehouse_bench.py [--rows 1000000] [--per-run 20] [--home DIR]

Real traces: tiny_seg is profiled once per dtype on the host (real ETDump runs), then each run's
rows are replayed as later nights of several targets, with a slow drift and noise on durations.

1. Batch ingestion (what `sme2 warehouse ingest` / `rebuild` do): Warehouse.insert_each over one
   connection, one transaction per run, all tables of each run (runs, samples, event slots, event
   times, op/category stats, kernels), from the RunRows the run folders give. Against it, plain
   DuckDB appends the same runs' op_event_times rows (already in Arrow) over one connection, one
   transaction per run, with the same durability (synced checkpoint at the end). Chunks alternate
   (plain, ours, plain, ours, ...) so load on the machine hits both alike.
2. The per-run path (what each Dagster run and `sme2 profile` do): Warehouse.insert_run of one
   12,000-row run, connection opened and closed, against plain DuckDB opening the file, appending
   that run's op_event_times rows in a transaction and closing, alternating run by run.
3. Every named query and a full scan of op_events over the result."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

TARGETS = ["host.sme2-off", "phone.sme2-on", "phone.sme2-off", "board.sme2-on", "board.sme2-off"]
PLAIN_DDL = """CREATE TABLE IF NOT EXISTS op_event_times (run_no INTEGER NOT NULL, iteration INTEGER NOT NULL,
    seq INTEGER NOT NULL, slot INTEGER NOT NULL, start_us DOUBLE, duration_ms DOUBLE NOT NULL)"""


def real_templates(root, iterations: int):
    from kit.devices import inventory
    from kit.export import exporter
    from kit.models import registry
    from kit.profile import session
    from kit.runners.build import build_runner
    from kit.store import runrows

    host = inventory.resolve("host.sme2-off", root)
    binary = build_runner(root)
    out = []
    for dtype in ("fp32", "int8"):
        exp = exporter.export_variant(registry.get("tiny_seg"), dtype, "small", root)
        r = session.run_session(
            root, exp, host, session.Measurement(threads=1, iterations=iterations, warmup=3, binary=binary)
        )
        out.append(runrows.rows_from_run(r.run_dir))
    return out


def replay(templates, i: int, rng, prefix: str = "bench"):
    """Run i of the replayed history: template i mod 2, target and night from i, noisy durations."""
    from kit.store import runrows

    t = templates[i % len(templates)]
    night = i // (len(TARGETS) * len(templates))
    target = TARGETS[(i // len(templates)) % len(TARGETS)]
    run_id = f"{prefix}-{i:07d}"
    scale = 1.0 + 0.002 * night
    run = {
        **t.run,
        "run_id": run_id,
        "target": target,
        "device": target.split(".")[0],
        "sme2": target.endswith("on"),
        "run_key": f"{t.run['variant']}|{target}|small|t1|native",
        "started_at": np.datetime64("2026-01-01") + np.timedelta64(night, "D"),
        "run_dir": None,
    }
    noise = rng.lognormal(0, 0.05, len(t.events))
    return runrows.RunRows(
        run,
        t.samples.assign(run_id=run_id, latency_ms=t.samples.latency_ms * scale),
        t.events.assign(run_id=run_id, duration_ms=t.events.duration_ms.to_numpy() * scale * noise),
        t.op_stats.assign(run_id=run_id, median_ms=t.op_stats.median_ms * scale),
        t.category_stats.assign(run_id=run_id, median_ms=t.category_stats.median_ms * scale),
        t.kernels.assign(run_id=run_id),
        t.artifacts.iloc[0:0],
    )


def plain_batch(path, tables) -> float:
    """Plain DuckDB: one connection, one transaction per run appending its op_event_times rows,
    commits unsynced and one synced checkpoint at the end (the durability insert_each has)."""
    import duckdb

    t0 = time.perf_counter()
    conn = duckdb.connect(str(path))
    conn.execute(PLAIN_DDL)
    conn.execute("SET fsync_mode = 'NONE'")
    conn.execute("SET checkpoint_threshold = '1TB'")
    conn.execute("SET threads = 1")  # the settings ours writes with
    for table in tables:
        conn.execute("BEGIN TRANSACTION")
        conn.register("_t", table)
        conn.execute("INSERT INTO op_event_times SELECT * FROM _t")
        conn.unregister("_t")
        conn.execute("COMMIT")
    conn.execute("SET fsync_mode = 'STANDARD'")
    conn.execute("CHECKPOINT")
    conn.close()
    return time.perf_counter() - t0


def plain_one(path, table) -> float:
    """Plain DuckDB, per run: open the file, append the run's op_event_times rows in a transaction
    (synced commit), close (DuckDB's default checkpoint on close)."""
    import duckdb

    t0 = time.perf_counter()
    conn = duckdb.connect(str(path))
    conn.execute("SET threads = 1")  # the settings ours writes with
    conn.execute("BEGIN TRANSACTION")
    conn.register("_t", table)
    conn.execute("INSERT INTO op_event_times SELECT * FROM _t")
    conn.unregister("_t")
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


def v1_one(path, rows) -> float:
    """The write path before schema v2, kept here as the "before" of the comparison: open the file,
    create/check the schema, one transaction inserting every table from pandas (op events wide,
    run id on every row), close. `sme2 warehouse rebuild` ran this once per run folder."""
    import duckdb

    from kit.store.schema import MIGRATIONS

    t0 = time.perf_counter()
    conn = duckdb.connect(str(path))
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    if not conn.execute("SELECT count(*) FROM schema_version").fetchone()[0]:
        conn.execute(MIGRATIONS[0])
        conn.execute("INSERT INTO schema_version VALUES (1, now())")
    conn.execute("BEGIN TRANSACTION")
    conn.execute("SELECT count(*) FROM runs WHERE run_id = ?", [rows.run["run_id"]]).fetchall()
    for table, frame in rows.tables():
        if frame is None or frame.empty:
            continue
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        conn.register("_frame", frame)
        conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _frame")
        conn.unregister("_frame")
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="op-event rows to ingest in batch")
    ap.add_argument("--per-run", type=int, default=20, help="runs timed one by one in the per-run path")
    ap.add_argument("--iterations", type=int, default=200, help="iterations per real trace")
    ap.add_argument("--chunk-rows", type=int, default=250_000, help="rows per alternating chunk")
    ap.add_argument("--home", default=None)
    a = ap.parse_args()

    from kit.core.home import DataRoot
    from kit.store import queries, runwriter, warehouse

    root = DataRoot.resolve(a.home)
    for p in (root.warehouse, root.path / "plain.duckdb", root.path / "v1.duckdb"):
        for f in (p, p.with_name(p.name + ".wal")):
            f.unlink(missing_ok=True)
    plain_path = root.path / "plain.duckdb"
    templates = real_templates(root, a.iterations)
    per_run = statistics.mean(len(t.events) for t in templates)
    n_runs = int(a.rows / per_run) + 1
    chunk = max(1, int(a.chunk_rows / per_run))
    print(f"{len(templates)} real traces, {per_run:.0f} op-event rows per run -> {n_runs} runs in chunks of {chunk}")

    # 1. Batch ingestion, chunks alternating between plain DuckDB and ours.
    wh = warehouse.Warehouse.at(root)
    wh.ensure()
    rng = np.random.default_rng(0)
    ours_s = plain_s = 0.0
    rows_in = 0
    for start in range(0, n_runs, chunk):
        runs = [replay(templates, i, rng) for i in range(start, min(start + chunk, n_runs))]
        tables = [runwriter.event_tables(r.events, i + 1)[1] for i, r in enumerate(runs, start)]
        plain_s += plain_batch(plain_path, tables)
        t0 = time.perf_counter()
        added = wh.insert_each(runs)
        ours_s += time.perf_counter() - t0
        assert len(added) == len(runs)
        rows_in += sum(len(r.events) for r in runs)
        print(
            f"  {start + len(runs)}/{n_runs} runs: ours {rows_in / ours_s:,.0f} rows/s, plain {rows_in / plain_s:,.0f} rows/s",
            flush=True,
        )
    ours_rate, plain_rate = rows_in / ours_s, rows_in / plain_s
    size_mb = root.warehouse.stat().st_size / 1e6
    print(
        f"\nbatch ingestion of {rows_in:,} op-event rows in {n_runs} runs (one transaction each), file {size_mb:.0f} MB:"
        f"\n  ours (Warehouse.insert_each, every table)   {ours_s:7.1f} s  {ours_rate:12,.0f} rows/s  {n_runs / ours_s:6.1f} runs/s"
        f"\n  plain DuckDB append of op_event_times     {plain_s:7.1f} s  {plain_rate:12,.0f} rows/s"
        f"\n  -> ours / plain = {ours_rate / plain_rate:.2f}; goal >= 1,000,000 rows/s: {'met' if ours_rate >= 1e6 else 'NOT met'}"
    )

    # 2. The per-run path, alternating run by run.
    v1_path = root.path / "v1.duckdb"
    ours_ms, plain_ms, v1_ms = [], [], []
    for k in range(a.per_run):
        rows = replay(templates, n_runs + k, rng)
        table = runwriter.event_tables(rows.events, n_runs + k + 1)[1]
        plain_ms.append(1e3 * plain_one(plain_path, table))
        v1_ms.append(1e3 * v1_one(v1_path, rows))
        t0 = time.perf_counter()
        assert wh.insert_run(rows)
        ours_ms.append(1e3 * (time.perf_counter() - t0))
    o, p, v = statistics.median(ours_ms), statistics.median(plain_ms), statistics.median(v1_ms)
    print(
        f"\nper-run path, one {per_run:,.0f}-row run, connection opened and closed (median of {a.per_run}):"
        f"\n  ours (Warehouse.insert_run, every table)  {o:7.1f} ms"
        f"\n  before (schema v1 write path)             {v:7.1f} ms  -> ours is {v / o:.1f}x faster"
        f"\n  plain DuckDB open + append + close        {p:7.1f} ms"
        f"\n  -> ours / plain = {o / p:.2f}; goal <= 20 ms: {'met' if o <= 20 else 'NOT met'}"
        f"\nbefore, batch ingestion (rebuild) ran that path once per folder: {per_run / v * 1e3:,.0f} rows/s"
        f" -> batch now {ours_rate / (per_run / v * 1e3):.1f}x faster"
    )
    for f in (v1_path, v1_path.with_name(v1_path.name + ".wal")):
        f.unlink(missing_ok=True)

    # 3. Queries over the result.
    params = {
        "latest-ops": {"variant": "tiny_seg-fp32", "target": "phone.sme2-on"},
        "op-history": {"op": "Convolution", "variant": "tiny_seg-int8", "target": "phone.sme2-on"},
        "category-shares": {"variant": "tiny_seg-int8"},
        "biggest-changes": {"variant": "tiny_seg-fp32", "target": "board.sme2-off"},
        "runs": {"limit": "50"},
    }
    print()
    for name, prm in params.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            df = queries.run(wh, name, prm)
            times.append(time.perf_counter() - t0)
        print(f"query {name:16s} {statistics.median(times) * 1e3:8.1f} ms (median of 3), {len(df)} rows")
    t0 = time.perf_counter()
    df = wh.sql(
        "SELECT op_type, approx_quantile(duration_ms, 0.5) AS p50 FROM op_events GROUP BY op_type ORDER BY p50 DESC"
    )
    print(f"sql full scan of op_events (median per op type) {1e3 * (time.perf_counter() - t0):.1f} ms, {len(df)} rows")
    plain_path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
