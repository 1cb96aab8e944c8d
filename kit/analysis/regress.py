"""Regression detection over the warehouse history, per run key and per operator.

Method: the newest run's raw samples against a baseline window (the previous N runs of the same key,
pooled), one-sided Mann-Whitney U (is the new run slower? no normality assumption; iterations
treated as exchangeable within a run), with a minimum effect size in relative and absolute terms
(5% of the median, and at least 0.05 ms and 0.5% of the end-to-end median for an operator) so that
statistically detectable but irrelevant changes are ignored, and Benjamini-Hochberg control of the
false discovery rate across the operators tested at once. A regression is a slowdown only: a faster
run never fails the gate (it is reported as faster).

Emulated targets never compare time: their check compares kernels and operator mix, and, where
both runs were counted (kit.counts), the instructions every operator retired, class by class. Counts
are deterministic, so any difference is a real change of the work done (no statistics, no
threshold): the check names the operator, the class and the difference.
What a user can conclude from a flagged operator: its time distribution moved by at least the
minimum effect, and among all flagged operators at most `alpha` are expected to be false alarms."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kit.store import history
from kit.trace import kernels


def _scipy_stats():
    """scipy.stats, imported when a statistic is computed: it takes seconds to import, and most
    commands that reach this module (sme2 sql, runs, report) never need it."""
    from scipy import stats

    return stats


ALPHA = 0.05
MIN_EFFECT = 0.05  # 5% change of the median
MIN_ABS_MS = 0.05  # an operator slower by less than this is not a regression, however significant
MIN_SHARE_OF_E2E = 0.005  # nor one whose slowdown is under 0.5% of the end-to-end median
WINDOW = 7


@dataclass
class Test:
    scope: str  # "e2e" or "op"
    op_type: str | None
    baseline_median_ms: float
    new_median_ms: float
    change: float  # new / baseline - 1
    p_value: float
    q_value: float = float("nan")
    significant: bool = False


def mann_whitney(new: np.ndarray, baseline: np.ndarray) -> float:
    """One-sided: the p-value of "the new samples tend to be larger (slower)"."""
    if len(new) < 3 or len(baseline) < 3:
        return 1.0
    if np.all(new == new[0]) and np.all(baseline == new[0]):
        return 1.0
    return float(_scipy_stats().mannwhitneyu(new, baseline, alternative="greater").pvalue)


def compare(
    new: dict[str, np.ndarray],
    baseline: dict[str, np.ndarray],
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    min_abs_ms: float = MIN_ABS_MS,
    min_share_of_e2e: float = MIN_SHARE_OF_E2E,
) -> list[Test]:
    """Test every key present in both (key None = end to end); BH across the operator keys. A test
    is significant only for a slowdown at least `min_effect` relative, `min_abs_ms` absolute and,
    for an operator, `min_share_of_e2e` of the baseline's end-to-end median."""
    tests = []
    for key in sorted(set(new) & set(baseline), key=str):
        a, b = np.asarray(new[key], float), np.asarray(baseline[key], float)
        if len(a) == 0 or len(b) == 0:
            continue
        mb, ma = float(np.median(b)), float(np.median(a))
        change = ma / mb - 1 if mb > 0 else (0.0 if ma == 0 else float("inf"))
        tests.append(Test("e2e" if key is None else "op", key, mb, ma, change, mann_whitney(a, b)))
    ops = [t for t in tests if t.scope == "op"]
    if ops:  # Benjamini-Hochberg q-values: the smallest FDR at which each test would be rejected
        for t, q in zip(ops, _scipy_stats().false_discovery_control([t.p_value for t in ops], method="bh")):
            t.q_value = float(q)
    e2e = next((t.baseline_median_ms for t in tests if t.scope == "e2e"), 0.0)
    for t in tests:
        q = t.p_value if t.scope == "e2e" else t.q_value
        floor = min_abs_ms if t.scope == "e2e" else max(min_abs_ms, min_share_of_e2e * e2e)
        t.significant = bool(q < alpha and t.change >= min_effect and t.new_median_ms - t.baseline_median_ms >= floor)
    return tests


@dataclass
class Finding:
    passed: bool
    message: str
    blocking: bool = False
    tests: list[Test] = field(default_factory=list)


def _op_samples(wh, run_ids: list[str]) -> dict[str, np.ndarray]:
    df = history.op_iteration_sums(wh, run_ids)
    return {op: g.ms.to_numpy() for op, g in df.groupby("op_type")}


def check_run(
    wh,
    run_id: str,
    window: int = WINDOW,
    alpha: float = ALPHA,
    min_effect: float = MIN_EFFECT,
    block_ratio: float = 1.5,
    store: bool = True,
) -> Finding:
    """The regression gate of one run against its key's history; findings are stored as rows."""
    run = history.run_row(wh, run_id)
    if run.empty:
        return Finding(True, f"run {run_id} is not in the warehouse")
    key, emulated, started = run.run_key[0], bool(run.emulated[0]), run.started_at[0]
    base_ids = history.earlier_runs(wh, key, started, run_id, window)
    if not base_ids:
        return Finding(True, f"{key}: no earlier run to compare with")
    if emulated:
        return _check_mix(wh, run_id, base_ids[0], key)
    new_e2e = history.timing_samples(wh, [run_id])
    old_e2e = history.timing_samples(wh, base_ids)
    new, old = {None: new_e2e, **_op_samples(wh, [run_id])}, {None: old_e2e, **_op_samples(wh, base_ids)}
    tests = compare(new, old, alpha, min_effect)
    if store:
        _store(wh, run_id, key, len(base_ids), tests)
    e2e = next((t for t in tests if t.scope == "e2e"), None)
    slower = [t for t in tests if t.scope == "op" and t.significant and t.change > 0]
    blocking = bool(e2e and e2e.significant and e2e.new_median_ms / e2e.baseline_median_ms >= block_ratio)
    parts = []
    if e2e:
        direction = "slower" if e2e.change > 0 else "faster" if e2e.change < 0 else "unchanged"
        parts.append(
            f"e2e {e2e.baseline_median_ms:.3f} -> {e2e.new_median_ms:.3f} ms ({e2e.change:+.1%}, {direction}; "
            f"p={e2e.p_value:.2g} for a slowdown{', significant' if e2e.significant else ''})"
        )
    if slower:
        parts.append(
            "slower operators: "
            + ", ".join(f"{t.op_type} {t.change:+.0%}" for t in sorted(slower, key=lambda t: -t.change)[:5])
        )
    passed = not (e2e and e2e.significant) and not slower
    return Finding(
        passed, f"{key} vs {len(base_ids)} earlier run(s): " + ("; ".join(parts) or "no change"), blocking, tests
    )


COUNTED = (
    "instructions",
    "sme_outer", "sme_za", "sme_mem", "sve", "sve_mem", "simd", "simd_mem", "fp", "int", "int_mem", "branch",
    "system", "other", "bytes_loaded", "bytes_stored",
)  # fmt: skip


def count_diff(wh, run_id: str, base_id: str) -> pd.DataFrame | None:
    """Every difference in instruction counts between two counted runs: per operator type (and
    Method::execute as a whole) and counted quantity, the baseline's and the new run's values of
    their first counted execution. Empty: identical. None: either run was not counted."""
    df = history.first_execution_counts(wh, [run_id, base_id], COUNTED)
    if set(df.run_id) != {run_id, base_id}:
        return None
    new = df[df.run_id == run_id].set_index("op_type")[list(COUNTED)]
    old = df[df.run_id == base_id].set_index("op_type")[list(COUNTED)]
    ops = new.index.union(old.index)
    new, old = new.reindex(ops, fill_value=0), old.reindex(ops, fill_value=0)
    diff = (new - old).stack()
    rows = [
        {
            "op_type": op,
            "counted": col,
            "baseline": int(old.loc[op, col]),
            "new": int(new.loc[op, col]),
            "change": int(d),
            "relative": d / old.loc[op, col] if old.loc[op, col] else float("inf"),
        }
        for (op, col), d in diff.items()
        if d != 0
    ]
    return pd.DataFrame(rows, columns=["op_type", "counted", "baseline", "new", "change", "relative"])


def check_counts(wh, run_id: str, base_id: str, key: str) -> Finding | None:
    """The zero-noise gate: any change of any counted quantity fails. None when not both counted."""
    diff = count_diff(wh, run_id, base_id)
    if diff is None:
        return None
    if diff.empty:
        return Finding(True, f"{key}: instruction counts identical to run {base_id} (every operator, every class)")
    ops = diff[diff.counted == "instructions"].sort_values("change", key=abs, ascending=False)
    shown = ops if not ops.empty else diff
    listing = "; ".join(
        f"{r.op_type} {r.counted} {r.baseline:,} -> {r.new:,} ({r.change:+,}"
        + (f", {r.relative:+.2%})" if r.relative != float("inf") else ")")
        for r in shown.head(6).itertuples()
    )
    return Finding(
        False,
        f"{key}: instruction counts changed against run {base_id} in {diff.op_type.nunique()} operator type(s), "
        f"{len(diff)} counted quantities: {listing}",
        tests=[],
    )


def count_gate(wh, run_id: str, base_id: str | None = None) -> Finding | None:
    """`sme2 regressions --counts`: a counted run against `base_id`, else the previous counted run of
    its key. None when there is nothing to compare (not counted, or no earlier counted run)."""
    run = history.run_row(wh, run_id)
    if run.empty:
        return Finding(False, f"run {run_id} is not in the warehouse")
    key = run.run_key[0]
    if base_id is None:
        base = history.earlier_runs(wh, key, run.started_at[0], run_id, 1, counted=True)
        if not base:
            return None
        base_id = base[0]
    return check_counts(wh, run_id, base_id, key)


def _check_mix(wh, run_id: str, base_id: str, key: str) -> Finding:
    """Emulated runs: did the operator mix (types and instance counts) or kernel families change?"""
    new, old = history.op_instances(wh, run_id), history.op_instances(wh, base_id)
    added, removed = sorted(set(new) - set(old)), sorted(set(old) - set(new))
    recount = sorted(o for o in set(new) & set(old) if new[o] != old[o])
    fam_new = {kernels.family(o) for o in new}
    fam_old = {kernels.family(o) for o in old}
    changes = []
    if added or removed:
        changes.append(f"operators added {added[:4]} removed {removed[:4]}")
    if recount:
        changes.append(f"instance counts changed for {recount[:4]}")
    if fam_new != fam_old:
        changes.append(f"kernel families {sorted(fam_old)} -> {sorted(fam_new)}")
    counted = check_counts(wh, run_id, base_id, key)
    if counted is not None and not counted.passed:
        changes.append(counted.message.split(": ", 1)[1])
    what = "kernels, operator mix and instruction counts" if counted is not None else "kernels and operator mix only"
    return Finding(
        not changes,
        f"{key} (emulated: {what}, never time): "
        + (
            "; ".join(changes)
            or "same operators and kernels" + (" and counts" if counted else "") + " as the previous run"
        ),
    )


def _store(wh, run_id: str, key: str, n_base: int, tests: list[Test]) -> None:
    if not tests:
        return
    rows = pd.DataFrame(
        [
            {
                "detected_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
                "run_id": run_id,
                "run_key": key,
                "scope": t.scope,
                "op_type": t.op_type,
                "baseline_runs": n_base,
                "baseline_median_ms": t.baseline_median_ms,
                "new_median_ms": t.new_median_ms,
                "change": t.change,
                "p_value": t.p_value,
                "q_value": t.q_value,
                "significant": t.significant,
                "method": "mann-whitney-u+bh",
                "detail": "",
            }
            for t in tests
        ]
    )
    history.replace_regressions(wh, run_id, rows)
