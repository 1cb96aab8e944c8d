"""A run's instruction-count table (`op_counts.csv` in its folder): every ETDump event of its
counting run with the instructions retired inside it, by class, and the estimated cycles; plus the
summary kept in run.json (`results.counts`).

Counts are deterministic: the same program, input and emulated CPU give the same numbers on any
host under any load. They are instruction counts of an EMULATED CPU, and est_cycles an estimate
from them (kit.counts.costmodel), never hardware time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.core import atomic
from kit.core.errors import RunFolderError
from kit.counts import attribution, costmodel, plugin_log
from kit.stats import categories
from kit.trace.etdump import Trace

FILE = "op_counts.csv"
FOLDER = "counting"  # the counting run's own files: ETDump, runner JSON and log, the plugin's counts
PLUGIN_FILE = "counts.txt"
WARMUP = 1  # the first execution fills caches and lazily initialized state: not counted
ITERATIONS = 2  # counted executions (each counts the same; two show that they do)
EST_COLUMNS = ["est_cycles", "est_compute_cycles", "est_memory_cycles"]
COLUMNS = [
    *attribution.KEY_COLUMNS,
    "category",
    "fine_category",
    *attribution.COUNT_COLUMNS,
    *attribution.SUMMARY_COLUMNS,
    *EST_COLUMNS,
]
GROUPS = [
    "instructions",
    "sme_instructions",
    "simd_instructions",
    "scalar_instructions",
    "bytes_loaded",
    "bytes_stored",
]


@dataclass
class CountTable:
    events: pd.DataFrame  # COLUMNS
    summary: dict


def build(trace: Trace, counts_file: Path, rules, model: costmodel.CostModel) -> CountTable:
    """The counts of every event of `trace`, categorized like the timings, with estimated cycles."""
    found = attribution.attribute(trace, plugin_log.read(counts_file))
    ev = categories.label(found.events, rules)
    ops = ev.row_kind != "operator"
    ev.loc[ops, ["category", "fine_category"]] = ""
    ev = pd.concat([ev, costmodel.estimate(ev, model)], axis=1)[COLUMNS]
    return CountTable(ev, summarize(ev, found.checks, model))


def summarize(ev: pd.DataFrame, checks: dict, model: costmodel.CostModel) -> dict:
    """What run.json keeps: Method::execute's totals and each category's, of the first counted
    execution (every execution counts the same, or `checks.iterations_identical` says otherwise)."""
    first = ev[ev.iteration == ev.iteration.min()]
    method = first[first.row_kind == "method"]
    ops = first[first.row_kind == "operator"]
    totals = {k: int(method[k].sum()) for k in [*GROUPS, "est_cycles"]}
    by_category = {
        str(cat): {k: int(g[k].sum()) for k in ["instructions", "sme_instructions", "est_cycles"]}
        for cat, g in ops.groupby("category", sort=True)
    }
    return {
        "what": "instructions retired by the emulated CPU (deterministic) and cycles estimated from them",
        "cost_model": model.label,
        "execute": totals,
        "categories": by_category,
        "checks": checks,
    }


def write(folder: Path, table: CountTable) -> Path:
    return atomic.write_text(Path(folder) / FILE, table.events.to_csv(index=False))


def read(run_dir: Path) -> pd.DataFrame | None:
    """A run folder's count table, None when the run has none. A malformed file raises, naming it."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[])
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise RunFolderError(f"{path} is not a readable count table ({e})", "re-run the counting run") from e
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise RunFolderError(f"{path} lacks the columns {', '.join(missing)}", "re-run the counting run")
    numeric = [*attribution.COUNT_COLUMNS, *attribution.SUMMARY_COLUMNS, *EST_COLUMNS, "iteration", "seq"]
    bad = [c for c in numeric if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise RunFolderError(f"{path}: columns {', '.join(bad)} are not numbers", "re-run the counting run")
    frame["delegated"] = frame["delegated"].astype(str).str.lower().eq("true")
    return frame[COLUMNS]
