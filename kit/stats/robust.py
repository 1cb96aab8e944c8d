"""Robust statistics of latency samples (end-to-end or one operator), pure functions.

`robust_stats` returns the keys Arm's kit writes in `*_robust_stats.json` (so its users can compare
files) plus ours: p5/p10/p25, the median absolute deviation, and a bootstrap 95% interval of the
median. What a user can conclude: the median is the number to quote; cv_percent above ~5% means the
device was noisy (thermal, governor, other load); non-overlapping median intervals between two runs
mean a real difference at roughly the 5% level."""

from __future__ import annotations

import numpy as np


def _scipy_stats():
    """scipy.stats, imported when a statistic is computed: it takes seconds to import, and most
    commands that reach this module (sme2 sql, runs, report) never need it."""
    from scipy import stats

    return stats


MAX_RESAMPLED_VALUES = 4_000_000  # bootstrap cost cap: resamples x sample size
MAX_RESAMPLES = 2000
BATCH_VALUES = 1_000_000  # resampled values held in memory at once


def bootstrap_ci(samples, statistic, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*samples, axis=-1)`, each sample resampled on
    its own (scipy.stats.bootstrap). The one place a bootstrap interval is computed: the resample
    count is capped by cost (resamples x longest sample <= MAX_RESAMPLED_VALUES, at least 200),
    memory by batching, and the result is deterministic for a seed. A sample of one value gives
    the point value at both ends; an empty one gives NaN.

    Assumes iterations are exchangeable (no drift within the run)."""
    data = tuple(np.asarray(s, dtype=np.float64).ravel() for s in samples)
    n = max((s.size for s in data), default=0)
    if n == 0 or min(s.size for s in data) == 0:
        return float("nan"), float("nan")
    if min(s.size for s in data) == 1:
        point = float(statistic(*data, axis=-1))
        return point, point
    b = int(max(200, min(MAX_RESAMPLES, MAX_RESAMPLED_VALUES // n)))
    res = _scipy_stats().bootstrap(
        data,
        statistic,
        n_resamples=b,
        batch=max(1, BATCH_VALUES // n),
        vectorized=True,
        axis=-1,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def bootstrap_median_ci(x: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (see `bootstrap_ci`)."""
    return bootstrap_ci((x,), np.median, level, seed)


def robust_stats(samples, outlier_threshold: float = 1.5) -> dict:
    """Arm-kit compatible robust statistics of samples in milliseconds (1.5 IQR outliers)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return {"count": 0}
    mean, median = float(np.mean(x)), float(np.median(x))
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    q = np.percentile(x, [5, 10, 25, 50, 75, 90, 95, 99])
    p5, p10, q1, p50, q3, p90, p95, p99 = (float(v) for v in q)
    iqr = q3 - q1
    lower, upper = q1 - outlier_threshold * iqr, q3 + outlier_threshold * iqr
    outliers = x[(x < lower) | (x > upper)]
    clean = x[(x >= lower) & (x <= upper)]
    if clean.size == 0:
        clean = x
    c_mean = float(np.mean(clean))
    c_std = float(np.std(clean, ddof=1)) if clean.size > 1 else 0.0
    ci = bootstrap_median_ci(x)
    return {
        "count": int(x.size),
        "mean_ms": mean,
        "median_ms": median,
        "std_dev_ms": std,
        "cv_percent": std / mean * 100 if mean > 0 else 0.0,
        "min_ms": float(np.min(x)),
        "max_ms": float(np.max(x)),
        "percentiles": {"p5": p5, "p10": p10, "p25": q1, "p50": p50, "p75": q3, "p90": p90, "p95": p95, "p99": p99},
        "outliers": {
            "count": int(outliers.size),
            "percentage": outliers.size / x.size * 100,
            "values": outliers.tolist(),
            "bounds": {"lower": lower, "upper": upper},
        },
        "trimmed_mean_5_ms": float(_scipy_stats().trim_mean(x, 0.05)),
        "trimmed_mean_10_ms": float(_scipy_stats().trim_mean(x, 0.10)),
        "robust_stats": {
            "count": int(clean.size),
            "mean_ms": c_mean,
            "median_ms": float(np.median(clean)),
            "std_dev_ms": c_std,
            "cv_percent": c_std / c_mean * 100 if c_mean > 0 else 0.0,
        },
        "mad_ms": float(np.median(np.abs(x - median))),
        "median_ci95_ms": list(ci),
    }


def summary_row(samples) -> dict:
    """The flat subset stored per operator in tables: median, p10/p90, mean, std, cv, min, max, CI."""
    s = robust_stats(samples)
    if s["count"] == 0:
        return {"count": 0}
    return {
        "count": s["count"],
        "median_ms": s["median_ms"],
        "mean_ms": s["mean_ms"],
        "p10_ms": s["percentiles"]["p10"],
        "p90_ms": s["percentiles"]["p90"],
        "std_dev_ms": s["std_dev_ms"],
        "cv_percent": s["cv_percent"],
        "min_ms": s["min_ms"],
        "max_ms": s["max_ms"],
        "mad_ms": s["mad_ms"],
        "ci_low_ms": s["median_ci95_ms"][0],
        "ci_high_ms": s["median_ci95_ms"][1],
    }
