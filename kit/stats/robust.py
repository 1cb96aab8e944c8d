"""Robust statistics of latency samples (end-to-end or one operator), pure functions.

`robust_stats` returns the keys Arm's kit writes in `*_robust_stats.json` (so its users can compare
files) plus ours: p5/p10/p25, the median absolute deviation, and a bootstrap 95% interval of the
median. What a user can conclude: the median is the number to quote; cv_percent above ~5% means the
device was noisy (thermal, governor, other load); non-overlapping median intervals between two runs
mean a real difference at roughly the 5% level."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

MAX_RESAMPLED_VALUES = 4_000_000  # bootstrap cost cap: resamples x sample size
MAX_RESAMPLES = 2000


def bootstrap_median_ci(x: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the median; vectorized, resample count capped by cost.

    Assumes iterations are exchangeable (no drift within the run)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    if n == 1:
        return float(x[0]), float(x[0])
    b = int(max(200, min(MAX_RESAMPLES, MAX_RESAMPLED_VALUES // n)))
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, n, size=(b, n))], axis=1)
    lo, hi = np.quantile(medians, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


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
        "trimmed_mean_5_ms": float(sps.trim_mean(x, 0.05)),
        "trimmed_mean_10_ms": float(sps.trim_mean(x, 0.10)),
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
