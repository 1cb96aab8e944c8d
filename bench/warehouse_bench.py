"""Warehouse at scale: a realistic DuckDB of ~10 million op-event rows built from real traces
(many nights x partitions), its ingestion throughput, and the time of each named query.

    python bench/warehouse_bench.py [--rows 10000000] [--home DIR]

Real traces: tiny_seg is profiled once per dtype on the host (real ETDump runs), then each run's
per-iteration operator events are replayed as later nights of several partitions, with a slow
drift and noise on durations, through the same insert path the CLI and the assets use."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--iterations", type=int, default=200, help="iterations per real trace")
    ap.add_argument("--home", default=None)
    a = ap.parse_args()

    from kit.core.home import DataRoot
    from kit.devices import inventory
    from kit.export import exporter
    from kit.models import registry
    from kit.profile import session
    from kit.runners.build import build_runner
    from kit.store import queries, warehouse

    root = DataRoot.resolve(a.home)
    if root.warehouse.exists():
        root.warehouse.unlink()
    host = inventory.resolve("host.sme2-off", root)
    binary = build_runner(root)
    pkg = registry.get("tiny_seg")
    templates = []
    for dtype in ("fp32", "int8"):
        exp = exporter.export_variant(pkg, dtype, "small", root)
        r = session.run_session(root, exp, host, threads=1, iterations=a.iterations, warmup=3, binary=binary)
        templates.append(warehouse.rows_from_run(r.run_dir))
    per_run = statistics.mean(len(t.events) for t in templates)
    n_runs = int(a.rows / per_run) + 1
    targets = ["host.sme2-off", "phone.sme2-on", "phone.sme2-off", "board.sme2-on", "board.sme2-off"]
    print(f"{len(templates)} real traces, {per_run:.0f} op-event rows per run -> {n_runs} runs for {a.rows:,} rows")

    wh = warehouse.Warehouse.at(root)
    rng = np.random.default_rng(0)
    t_insert, inserted = 0.0, 0
    for i in range(n_runs):
        t = templates[i % len(templates)]
        night = i // (len(targets) * len(templates))
        target = targets[(i // len(templates)) % len(targets)]
        run_id = f"bench-{i:06d}"
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
        rows = warehouse.RunRows(
            run,
            t.samples.assign(run_id=run_id, latency_ms=t.samples.latency_ms * scale),
            t.events.assign(run_id=run_id, duration_ms=t.events.duration_ms.to_numpy() * scale * noise),
            t.op_stats.assign(run_id=run_id, median_ms=t.op_stats.median_ms * scale),
            t.category_stats.assign(run_id=run_id, median_ms=t.category_stats.median_ms * scale),
            t.kernels.assign(run_id=run_id),
            t.artifacts.iloc[0:0],
        )
        t0 = time.perf_counter()
        wh.insert_run(rows)
        t_insert += time.perf_counter() - t0
        inserted += len(rows.events)
        if i % 500 == 0:
            print(f"  {i}/{n_runs} runs, {inserted:,} rows, {inserted / t_insert:,.0f} rows/s", flush=True)
    size_mb = root.warehouse.stat().st_size / 1e6
    print(
        f"\ningested {inserted:,} op-event rows in {n_runs} runs: {t_insert:.1f} s, {inserted / t_insert:,.0f} rows/s, {n_runs / t_insert:.1f} runs/s; file {size_mb:.0f} MB"
    )

    params = {
        "latest-ops": {"variant": "tiny_seg-fp32", "target": "phone.sme2-on"},
        "op-history": {"op": "Convolution", "variant": "tiny_seg-int8", "target": "phone.sme2-on"},
        "category-shares": {"variant": "tiny_seg-int8"},
        "biggest-changes": {"variant": "tiny_seg-fp32", "target": "board.sme2-off"},
        "runs": {"limit": "50"},
    }
    for name, p in params.items():
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            df = queries.run(wh, name, p)
            times.append(time.perf_counter() - t0)
        print(f"query {name:16s} {statistics.median(times) * 1e3:8.1f} ms (median of 3), {len(df)} rows")
    t0 = time.perf_counter()
    df = wh.sql(
        "SELECT op_type, approx_quantile(duration_ms, 0.5) AS p50 FROM op_events GROUP BY op_type ORDER BY p50 DESC"
    )
    print(f"sql full scan of op_events (median per op type) {1e3 * (time.perf_counter() - t0):.1f} ms, {len(df)} rows")


if __name__ == "__main__":
    main()
