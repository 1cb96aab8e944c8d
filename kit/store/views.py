"""What the per-run views show, read from the warehouse rows of a set of runs: the runs, their
per-operator statistics, category totals, per-iteration category sums and operator totals (from
`op_events`), and kernels. The views and their validation gates read the same rows, labelled
with the category rules the runs were stored with; no view re-parses an ETDump."""

from __future__ import annotations

import logging

import pandas as pd

from kit.core import names
from kit.core.errors import Sme2Error
from kit.store.warehouse import Warehouse

log = logging.getLogger("sme2")

# What each stored identifier must be before it is used (it may become a path or a partition key).
STORED_NAMES = {
    "run_id": lambda v: names.file_component("run id", v),
    "variant": lambda v: names.Variant.parse(v).key,
    "model": names.model_name,
    "dtype": names.dtype,
    "target": lambda v: names.Target.parse(v).key,
    "device": names.device_name,
    "size": names.size_name,
}


def valid_rows(df: pd.DataFrame, what: str = "runs") -> pd.DataFrame:
    """The rows whose stored identifiers are valid names; each other row is skipped with a warning
    naming the run and the field (a shared store or a corrupted file is untrusted input)."""
    if df.empty:
        return df
    keep = []
    for row in df.itertuples(index=False):
        bad = None
        for field, check in STORED_NAMES.items():
            if field in df.columns:
                try:
                    check(getattr(row, field))
                except (Sme2Error, TypeError, ValueError) as e:
                    bad = (field, getattr(row, field), getattr(e, "message", str(e)))
                    break
        if bad:
            log.warning(
                "skipping a row of %s: run %r has an invalid %s %r (%s)",
                what,
                getattr(row, "run_id", "?"),
                bad[0],
                bad[1],
                bad[2],
            )
        keep.append(bad is None)
    return df[keep].reset_index(drop=True)


SCHEME_COLUMNS = {"blog": "category", "fine": "fine_category"}  # op_events column of each scheme


def runs(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    return valid_rows(
        wh.query(
            """SELECT run_id, run_key, run_dir, variant, target, size, threads, sme2, dtype, emulated, iterations, warmup,
                  e2e_median_ms, e2e_p10_ms, e2e_p90_ms, e2e_cv_percent, e2e_ci_low_ms, e2e_ci_high_ms,
                  execute_median_ms, coverage, n_samples, n_op_events, n_op_stats
           FROM runs WHERE list_contains(?, run_id) ORDER BY threads, run_id""",
            [run_ids],
        )
    )


def op_stats(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """One row per run and operator type, slowest first within a run."""
    return wh.query(
        """SELECT s.run_id, r.threads, s.op_type, s.category, s.fine_category, s.delegated, s.instances, s.count,
                  s.median_ms, s.p10_ms, s.p90_ms, s.cv_percent, s.share_of_execute, s.kernel_hint
           FROM op_stats s JOIN runs r USING (run_id)
           WHERE list_contains(?, s.run_id) ORDER BY r.threads, s.run_id, s.median_ms DESC, s.op_type""",
        [run_ids],
    )


def category_stats(wh: Warehouse, run_ids: list[str], scheme: str | None = None) -> pd.DataFrame:
    """Category totals (median of per-iteration sums) and shares, per run and scheme."""
    return wh.query(
        """SELECT c.run_id, r.threads, c.scheme, c.category, c.median_ms, c.p10_ms, c.p90_ms, c.cv_percent, c.ops,
                  c.share_of_execute, c.share_of_operators
           FROM category_stats c JOIN runs r USING (run_id)
           WHERE list_contains(?, c.run_id) AND (? IS NULL OR c.scheme = ?)
           ORDER BY r.threads, c.run_id, c.scheme, c.median_ms DESC, c.category""",
        [run_ids, scheme, scheme],
    )


def iteration_category_sums(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """Per run, scheme, category and iteration: the sum of the operator events' durations.
    Events without a category are left out (so they show up as a gap against the total)."""
    parts = [
        f"""SELECT run_id, '{scheme}' AS scheme, {column} AS category, iteration, sum(duration_ms) AS ms
            FROM op_events WHERE list_contains($ids, run_id) AND {column} IS NOT NULL GROUP BY ALL"""
        for scheme, column in SCHEME_COLUMNS.items()
    ]
    return wh.query(" UNION ALL ".join(parts) + " ORDER BY run_id, scheme, category, iteration", {"ids": run_ids})


def iteration_operator_totals(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """Per run and iteration: the sum of all operator events' durations."""
    return wh.query(
        """SELECT run_id, iteration, sum(duration_ms) AS operators_ms FROM op_events
           WHERE list_contains(?, run_id) GROUP BY ALL ORDER BY run_id, iteration""",
        [run_ids],
    )


def kernels(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """Per run and operator type: the kernel family its name reveals, with its median time."""
    return wh.query(
        """SELECT k.run_id, r.threads, k.op_type, k.kernel_family, k.dtype_tags, k.sme2_only, s.median_ms
           FROM kernels k JOIN op_stats s USING (run_id, op_type) JOIN runs r USING (run_id)
           WHERE list_contains(?, k.run_id) ORDER BY r.threads, k.run_id, s.median_ms DESC, k.op_type""",
        [run_ids],
    )


def artifacts(wh: Warehouse, run_ids: list[str], kind: str | None = None) -> pd.DataFrame:
    """The files each run's rows came from (etdump, timing, robust_stats, ops_stats)."""
    return wh.query(
        """SELECT run_id, kind, path, sha256, bytes FROM artifacts
           WHERE list_contains(?, run_id) AND (? IS NULL OR kind = ?) ORDER BY run_id, kind""",
        [run_ids, kind, kind],
    )


# Fields a user may select runs by (`sme2 compare --a threads=1`), and their `runs` columns.
RUN_FILTERS = {
    "run": "run_id",
    "variant": "variant",
    "model": "model",
    "dtype": "dtype",
    "backend": "backend",
    "device": "device",
    "target": "target",
    "sme2": "sme2",
    "threads": "threads",
    "size": "size",
    "runner": "runner",
}


def find_runs(wh: Warehouse, filters: dict, current: bool = True) -> pd.DataFrame:
    """Runs matching every filter (RUN_FILTERS keys, values already typed), newest first; only the
    current run of each key unless `current` is False (a run id always finds its run)."""
    unknown = set(filters) - set(RUN_FILTERS)
    if unknown:
        raise ValueError(f"unknown run filter(s) {sorted(unknown)}")
    table = "runs" if not current or "run" in filters else "current_runs"
    where = " AND ".join(f"{RUN_FILTERS[k]} = ?" for k in filters) or "TRUE"
    found = wh.query(
        f"""SELECT run_id, run_key, variant, model, dtype, backend, target, device, sme2, emulated, threads, size,
                   runner, iterations, warmup, started_at, run_dir, e2e_median_ms, execute_median_ms, pte_sha256
            FROM {table} WHERE {where} ORDER BY started_at DESC, run_id DESC""",
        list(filters.values()),
    )
    return valid_rows(found)


def latency_samples(wh: Warehouse, run_ids: list[str], kind: str = "timing") -> pd.DataFrame:
    """Per-iteration latency samples: `timing` (the timing run, end to end) or `execute`
    (Method::execute of the ETDump run)."""
    return wh.query(
        """SELECT run_id, iteration, latency_ms FROM latency_samples
           WHERE list_contains(?, run_id) AND kind = ? ORDER BY run_id, iteration""",
        [run_ids, kind],
    )


def op_events(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """The operator events of runs, in execution order."""
    return wh.query(
        """SELECT run_id, iteration, seq, op_type, event_name, delegated, backend, instruction_id, category,
                  fine_category, kernel_hint, start_us, duration_ms
           FROM op_events WHERE list_contains(?, run_id) ORDER BY run_id, iteration, seq""",
        [run_ids],
    )


def op_counts(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """Instruction counts per run and operator type (the `op_counts` view: emulated runs that were
    counted; est_cycles are estimates from emulation, not hardware time), most cycles first."""
    return wh.query(
        """SELECT run_id, op_type, category, fine_category, delegated, instances, instructions, sme_instructions,
                  simd_instructions, scalar_instructions, memory_instructions, bytes_loaded, bytes_stored,
                  est_cycles, cost_model
           FROM op_counts WHERE list_contains(?, run_id) ORDER BY run_id, est_cycles DESC, op_type""",
        [run_ids],
    )


def execute_counts(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """Per counted run: Method::execute's instructions and estimated cycles (first counted execution)."""
    return wh.query(
        """SELECT run_id, instructions, sme_instructions, simd_instructions, scalar_instructions, bytes_loaded,
                  bytes_stored, est_cycles, cost_model
           FROM op_event_counts WHERE list_contains(?, run_id) AND row_kind = 'method' AND iteration = 0
           ORDER BY run_id""",
        [run_ids],
    )


def count_events(wh: Warehouse, run_ids: list[str]) -> pd.DataFrame:
    """Every counted event of runs (operators, delegate calls, Method::execute), in execution order."""
    return wh.query(
        """SELECT * FROM op_event_counts WHERE list_contains(?, run_id) ORDER BY run_id, iteration, seq""",
        [run_ids],
    )
