"""Stored runs looked up by id, key, variant or target, for the modules outside a variant's
report (kit.store.variant) and the regression gates (kit.store.history): a run's folder and
operator rows, the newest start of a run key, the newest current run of a variant on a target,
the current runs for the HUD export and a pipeline's summary, a run's timing latencies, and what
the kernel view pairs (a variant's current runs, a run's kernels with their median times)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def run_folder(wh, run_id: str) -> Path:
    """The run's folder as stored (KeyError: the run is not in the warehouse)."""
    return Path(wh.query("SELECT run_dir FROM runs WHERE run_id = ?", [run_id]).run_dir[0])


def operator_rows(wh, run_id: str) -> pd.DataFrame:
    """The run's operator types, each with its instances per execution and its category."""
    return wh.query("SELECT op_type, instances, category FROM op_stats WHERE run_id = ?", [run_id])


def newest_start(wh, run_key: str):
    """When the newest stored run of `run_key` started (None or NaT: no run of the key)."""
    return wh.query("SELECT max(started_at) AS t FROM runs WHERE run_key = ?", [run_key]).t[0]


def newest_current_run(wh, variant: str, target: str, size: str | None = None, threads: int | None = None):
    """The newest current run (a row of current_runs) of a variant on a target, optionally of one
    size and thread count; None when there is none."""
    df = wh.query(
        "SELECT * FROM current_runs WHERE variant = ? AND target = ? AND (? IS NULL OR size = ?)"
        " AND (? IS NULL OR threads = ?) ORDER BY started_at DESC, run_id DESC LIMIT 1",
        [variant, target, size, size, threads, threads],
    )
    return None if df.empty else df.iloc[0]


def current_runs(wh, variant: str | None = None) -> pd.DataFrame:
    """The current runs (of one variant, or all), by variant, target and threads."""
    return wh.query(
        "SELECT * FROM current_runs WHERE (? IS NULL OR variant = ?) ORDER BY variant, target, threads",
        [variant, variant],
    )


def current_summary(wh, variants: list[str], targets: list[str]) -> pd.DataFrame:
    """The current runs of `variants` on `targets`: key, end-to-end median (ms, 3 decimals),
    share of execute the operators cover (%) and run id, by variant and target."""
    return wh.query(
        "SELECT variant, target, size, threads, emulated, round(e2e_median_ms, 3) AS e2e_median_ms, "
        "round(100 * coverage, 1) AS ops_cover_pct, run_id FROM current_runs "
        "WHERE list_contains(?, variant) AND list_contains(?, target) ORDER BY variant, target",
        [variants, targets],
    )


def timing_latencies(wh, run_id: str) -> list[float]:
    """The run's measured end-to-end latencies (ms), in iteration order."""
    return wh.query(
        "SELECT latency_ms FROM latency_samples WHERE run_id = ? AND kind = 'timing' ORDER BY iteration", [run_id]
    ).latency_ms.tolist()


def variant_runs(wh, variant: str, device: str | None = None) -> pd.DataFrame:
    """The variant's current runs (on one device, or all), newest first: id, device, threads,
    SME2 flag, runner and start."""
    return wh.query(
        "SELECT run_id, device, threads, sme2, runner, started_at FROM current_runs WHERE variant = ? "
        "AND (? = '' OR device = ?) ORDER BY started_at DESC",
        [variant, device or "", device or ""],
    )


def kernel_times(wh, run_id: str) -> pd.DataFrame:
    """The run's operator types with their microkernel, ISA and median time (ms)."""
    return wh.query(
        "SELECT k.op_type, k.microkernel, k.isa, s.median_ms FROM kernels k JOIN op_stats s "
        "USING (run_id, op_type) WHERE run_id = ?",
        [run_id],
    )
