"""Statistics and categories: known answers on synthetic data, invariants on a real run (the
recorded run in tests/data)."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from kit.analysis import regress
from kit.stats import categories, robust


def test_robust_stats_known_answers():
    x = np.array([10.0] * 18 + [10.5, 30.0])  # one far outlier
    s = robust.robust_stats(x)
    assert s["count"] == 20 and s["median_ms"] == 10.0 and s["min_ms"] == 10.0 and s["max_ms"] == 30.0
    assert s["outliers"]["count"] == 2 and 30.0 in s["outliers"]["values"]
    assert s["robust_stats"]["count"] == 18 and s["robust_stats"]["cv_percent"] == 0.0
    assert s["mad_ms"] == 0.0
    assert s["trimmed_mean_10_ms"] == pytest.approx(10.0)
    for key in ("mean_ms", "std_dev_ms", "cv_percent", "percentiles", "trimmed_mean_5_ms", "median_ci95_ms"):
        assert key in s
    assert set(s["percentiles"]) == {"p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99"}


def test_bootstrap_interval_covers_the_true_median():
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(200):
        x = rng.lognormal(mean=0.0, sigma=0.3, size=50)  # true median exp(0) = 1
        lo, hi = robust.bootstrap_median_ci(x, seed=trial)
        hits += lo <= 1.0 <= hi
    assert 0.88 <= hits / 200 <= 0.99  # nominal 95%


def test_bootstrap_cost_is_capped():
    lo, hi = robust.bootstrap_median_ci(np.arange(100_000, dtype=float))
    assert lo < 50_000 < hi


def test_two_sample_bootstrap_is_deterministic_and_capped():
    rng = np.random.default_rng(1)
    off, on = rng.lognormal(np.log(10), 0.05, 50_000), rng.lognormal(np.log(4), 0.05, 40)
    ratio = lambda a, b, axis: np.median(a, axis=axis) / np.median(b, axis=axis)  # noqa: E731
    first = robust.bootstrap_ci((off, on), ratio, seed=4)
    assert first == robust.bootstrap_ci((off, on), ratio, seed=4) and first[0] < 2.5 < first[1]
    assert robust.bootstrap_median_ci([3.0]) == (3.0, 3.0) and np.isnan(robust.bootstrap_median_ci([])).all()


def _reference_bh(p):
    """The textbook step-up procedure, written out: q_(i) = min_{j >= i} p_(j) n / j, capped at 1."""
    p = np.asarray(p, float)
    n, order = len(p), np.argsort(p)
    q = np.minimum.accumulate((p[order] * n / np.arange(1, n + 1))[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


@pytest.mark.parametrize(
    "p",
    [
        [0.01, 0.04, 0.03, 0.2, 0.9],
        [0.5],
        [1.0, 1.0, 0.0],
        [0.001, 0.001, 0.002, 0.5, 0.049, 0.051, 0.8, 0.3],
        list(np.random.default_rng(9).uniform(size=40)),
    ],
)
def test_scipy_benjamini_hochberg_equals_the_step_up_procedure(p):
    assert np.allclose(sps.false_discovery_control(p, method="bh"), _reference_bh(p), rtol=0, atol=1e-12)


def test_regression_compare_uses_bh_across_operators():
    rng = np.random.default_rng(0)
    base = {k: rng.normal(1.0, 0.01, 40) for k in ("a", "b", "c")}
    new = {"a": rng.normal(1.2, 0.01, 40), "b": rng.normal(1.0, 0.01, 40), "c": rng.normal(1.0, 0.01, 40)}
    tests = {t.op_type: t for t in regress.compare(new, base)}
    assert np.allclose([tests[k].q_value for k in "abc"], _reference_bh([tests[k].p_value for k in "abc"]))
    assert tests["a"].significant and not tests["b"].significant


def test_regressions_are_slowdowns_beyond_a_minimum_effect():
    """One-sided with relative and absolute floors: a faster run is never a regression, and a
    significant but tiny slowdown of a sub-millisecond operator is not one either."""
    rng = np.random.default_rng(1)
    base = {None: rng.normal(10.0, 0.05, 60), "tiny": rng.normal(0.2, 0.001, 60), "big": rng.normal(3.0, 0.01, 60)}
    new = {None: rng.normal(9.0, 0.05, 30), "tiny": rng.normal(0.215, 0.001, 30), "big": rng.normal(3.6, 0.01, 30)}
    tests = {t.op_type: t for t in regress.compare(new, base)}
    assert tests[None].change < 0 and not tests[None].significant  # 10% faster: not a regression
    assert tests["tiny"].change > 0.05 and tests["tiny"].q_value < 0.01  # significant, 7.5% ...
    assert not tests["tiny"].significant  # ... but 0.015 ms: under the 0.05 ms floor
    assert tests["big"].significant  # 20% and 0.6 ms slower
    assert regress.mann_whitney(new[None], base[None]) > 0.5  # one-sided: faster gives a large p


def test_categories_partition_operator_time_exactly(recorded_run):
    a = recorded_run.analysis
    pi = a.per_iteration
    for scheme in ("blog", "fine"):
        cols = [c for c in pi.columns if c.startswith(f"{scheme}:")]
        assert np.allclose(pi[cols].sum(axis=1), pi["operators_ms"], rtol=0, atol=1e-9)
    blog = set(a.category_table("blog").category)
    assert blog <= set(categories.BLOG_ORDER)
    assert {"Convolution", "Data Movement"} <= blog


def test_operators_cover_most_of_method_execute(recorded_run):
    # Measured on this machine: 0.86-0.92 for tiny_seg small (the rest is runtime overhead
    # between instructions and inside DELEGATE_CALL). The bound leaves room for noise.
    assert 0.6 <= recorded_run.analysis.coverage <= 1.05


def test_other_is_reported(recorded_run):
    a = recorded_run.analysis
    other = set(a.op_stats[a.op_stats.category == "Other"].op_type)
    assert other <= set(a.other_ops)
    assert "aten::native_layer_norm.out" in a.other_ops


def test_arm_kit_compatible_files(recorded_run):
    rec = recorded_run.record
    robust = json.loads((recorded_run.run_dir / f"{rec.stem}_robust_stats.json").read_text())
    for key in (
        "count",
        "mean_ms",
        "median_ms",
        "std_dev_ms",
        "cv_percent",
        "min_ms",
        "max_ms",
        "percentiles",
        "outliers",
        "trimmed_mean_5_ms",
        "trimmed_mean_10_ms",
        "robust_stats",
        "latencies_ms",
    ):
        assert key in robust
    assert robust["count"] == rec.iterations == len(robust["latencies_ms"])
    assert robust["median_ms"] == pytest.approx(float(np.median(robust["latencies_ms"])))
    csv = (recorded_run.run_dir / f"{rec.stem}_exec_ops_stats.csv").read_text().splitlines()
    # The kit's columns first (etdump_to_csv), then our per-operator statistics.
    assert csv[0].startswith("model_id,name,type,delegate_backend,count,total_ms,avg_ms,pct_total,op_type,category")
    assert len(csv) > 5


def test_user_rules_come_first(tmp_path):
    user = tmp_path / "categories.toml"
    user.write_text('[[rule]]\nmatch = "^Transpose"\nblog = "Other"\nfine = "OTHER"\n')
    rules = categories.load_rules(user)
    assert categories.categorize("Transpose (ND, X32)", True, rules)["blog"] == "Other"
    assert categories.categorize("Transpose (ND, X32)", True, categories.load_rules())["blog"] == "Data Movement"


def test_portable_ops_are_their_own_fine_group():
    rules = categories.load_rules()
    assert categories.categorize("aten::native_layer_norm.out", False, rules) == {"blog": "Other", "fine": "PORTABLE"}
    assert categories.categorize("aten::permute_copy.out", False, rules)["blog"] == "Data Movement"


def test_bad_rules_file_is_a_clear_error(tmp_path):
    from kit.core.errors import Sme2Error

    bad = tmp_path / "categories.toml"
    bad.write_text('[[rule]]\nmatch = "("\nblog = "X"\n')
    with pytest.raises(Sme2Error, match="bad or missing `match`"):
        categories.load_rules(bad)
    bad.write_text('[[rule]]\nmach = "^T"\nblog = "X"\n')
    with pytest.raises(Sme2Error, match="rule 1 in .*categories.toml: unknown key `mach`"):
        categories.load_rules(bad)
    bad.write_text('[[rule]]\nmatch = "^T"\ndelegated = "yes"\n')
    with pytest.raises(Sme2Error, match="`delegated` = 'yes'"):
        categories.load_rules(bad)
