"""Any two runs side by side, from the warehouse: SME2 off vs on (the case study's table), 1 vs 2
threads, fp16 vs int8, device A vs B, or one run id vs another. Run A is the baseline, run B the
candidate: the end-to-end speedup A / B (> 1 when B is faster) with a bootstrap interval over both
runs' timing samples, per-category times and their share of runtime in each run, the kernel
families per category, per-operator speedups (operators matched by kind across dtypes and kernels)
and the bottleneck shift (largest category in A and in B).

When either run is emulated the same table shows operator counts, kernels and emulated times,
clearly labelled, and no speedups: an emulator's timings say nothing about hardware speed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from kit.core import limits, names
from kit.core.errors import NameError_, WarehouseError
from kit.stats import robust
from kit.stats.categories import BLOG_ORDER
from kit.store import views
from kit.store.warehouse import Warehouse
from kit.trace import kernels

# The fields that tell two runs apart, in the order labels name them.
FIELDS = ("model", "dtype", "backend", "device", "sme2", "threads", "size", "runner")


def _median_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def speedup_ci(a: np.ndarray, b: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(median_a / median_b, low, high): percentile bootstrap, each run's samples resampled on their own."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    lo, hi = robust.bootstrap_ci((a, b), _median_ratio, level, seed)
    return float(_median_ratio(a, b)), lo, hi


@dataclass(frozen=True)
class Side:
    """One run of a comparison, as the warehouse describes it."""

    run_id: str
    variant: str
    model: str
    dtype: str
    backend: str
    target: str
    device: str
    sme2: bool
    emulated: bool
    threads: int
    size: str
    runner: str
    run_dir: str = ""
    label: str = ""
    pte_sha256: str = ""

    @classmethod
    def of(cls, row) -> "Side":
        """From a row of views.find_runs (a Series: read by key, since `row.size` and `row.dtype`
        are the Series' own attributes)."""
        r = row if isinstance(row, pd.Series) else pd.Series(row._asdict())
        bad = views.valid_rows(pd.DataFrame([r]))
        if bad.empty:  # a row read back from storage whose names are not valid (the warning says which)
            raise NameError_(
                f"run {r.get('run_id')!r} in the warehouse has an invalid name: it cannot be compared",
                "check it with `sme2 warehouse verify`; re-ingest it from its run folder",
            )
        return cls(
            run_id=r["run_id"],
            variant=r["variant"],
            model=r["model"],
            dtype=r["dtype"],
            backend=r["backend"],
            target=r["target"],
            device=r["device"],
            sme2=bool(r["sme2"]),
            emulated=bool(r["emulated"]),
            threads=int(r["threads"]),
            size=r["size"],
            runner=r["runner"],
            run_dir=r["run_dir"] if isinstance(r["run_dir"], str) else "",
            pte_sha256=r["pte_sha256"] if isinstance(r.get("pte_sha256"), str) else "",
        )


@dataclass
class Comparison:
    a: Side  # baseline
    b: Side  # candidate
    e2e: dict  # a_ms, b_ms; speedup, ci_low, ci_high unless emulated
    categories: pd.DataFrame  # category, a_ms, b_ms, [speedup], share_a, share_b, ops_a, ops_b, kernels_a, kernels_b
    operators: pd.DataFrame  # operator, category, a/b types and kernels, instances, a_ms, b_ms, [speedup]
    bottleneck: dict = field(default_factory=dict)  # largest category in a and in b
    # Both runs counted (emulated): per category instructions and estimated cycles (count_categories),
    # and Method::execute's totals {a_/b_instructions, a_/b_est_cycles, ratios, cost_model}.
    counts: pd.DataFrame | None = None
    counts_execute: dict | None = None

    @property
    def emulated(self) -> bool:
        return self.a.emulated or self.b.emulated

    @property
    def differs(self) -> dict[str, tuple]:
        """The fields whose values differ between the runs: {field: (a, b)}."""
        return {f: (getattr(self.a, f), getattr(self.b, f)) for f in FIELDS if getattr(self.a, f) != getattr(self.b, f)}

    @property
    def sme2_pair(self) -> bool:
        """SME2 off (a) vs on (b) of one variant, device, thread count and size."""
        return set(self.differs) == {"sme2"} and not self.a.sme2 and self.b.sme2

    def _common(self, name: str):
        va, vb = getattr(self.a, name), getattr(self.b, name)
        return va if va == vb else f"{va} -> {vb}"

    # What both runs share (or "a -> b"): what the report and the Dagster asset print.
    variant = property(lambda self: self._common("variant"))
    device = property(lambda self: self._common("device"))
    threads = property(lambda self: self._common("threads"))
    size = property(lambda self: self._common("size"))

    def headline(self) -> str:
        e = self.e2e
        if self.sme2_pair:
            label = "EMULATED (times are not hardware times)" if self.emulated else "hardware"
            if self.emulated and self.counts_execute:
                x = self.counts_execute
                return (
                    f"{self.variant} on {self.device} [EMULATED], {self.threads} thread(s): SME2 off/on "
                    f"{x['est_cycles_ratio']:.2f}x estimated cycles, {x['instructions_ratio']:.2f}x instructions "
                    f"(counted on the emulated CPU; cycles estimated for {x['cost_model']}, not hardware time); "
                    f"emulated times off {e['a_ms']:.2f} ms, on {e['b_ms']:.2f} ms say nothing about speed"
                )
            if self.emulated:
                return f"{self.variant} on {self.device} [{label}], {self.threads} thread(s): SME2 off {e['a_ms']:.2f} ms, on {e['b_ms']:.2f} ms (emulated)"
            return f"{self.variant} on {self.device}, {self.threads} thread(s): {e['a_ms']:.2f} -> {e['b_ms']:.2f} ms, {e['speedup']:.2f}x (95% CI {e['ci_low']:.2f}-{e['ci_high']:.2f})"
        shared = ", ".join(
            f"{f} {getattr(self.a, f)}" for f in ("variant", "target", "threads", "size") if f not in self._varying()
        )
        what = f"{self.a.label} vs {self.b.label}" + (f" ({shared})" if shared else "")
        if self.emulated:
            return f"{what} [EMULATED: times are not hardware times]: {self.a.label} {e['a_ms']:.2f} ms, {self.b.label} {e['b_ms']:.2f} ms"
        return f"{what}: {e['a_ms']:.2f} -> {e['b_ms']:.2f} ms, {e['speedup']:.2f}x (95% CI {e['ci_low']:.2f}-{e['ci_high']:.2f})"

    def _varying(self) -> set[str]:
        d = set(self.differs)
        out = set()
        if d & {"model", "dtype", "backend"}:
            out.add("variant")
        if d & {"device", "sme2"}:
            out.add("target")
        return out | (d & {"threads", "size"})

    def kit_names(self) -> tuple[str, str]:
        """Column-name labels for Arm's kit files: SME2-Off / SME2-On for an SME2 pair (the kit's
        own names), else the labels with spaces as dashes."""
        if self.sme2_pair:
            return "SME2-Off", "SME2-On"
        return self.a.label.replace(" ", "-"), self.b.label.replace(" ", "-")


def labels(a: Side, b: Side) -> tuple[str, str]:
    """Short names for two runs from what differs: `off`/`on` for an SME2 pair, `t1`/`t2` for
    thread counts, dtypes, devices, ...; `A`/`B` when they differ only in time (one key, two runs)."""
    la, lb = [], []
    for f in FIELDS:
        va, vb = getattr(a, f), getattr(b, f)
        if va == vb:
            continue
        if f == "sme2":
            fmt = lambda v: "on" if v else "off"  # noqa: E731
        elif f == "threads":
            fmt = lambda v: f"t{v}"  # noqa: E731
        else:
            fmt = str
        la.append(fmt(va))
        lb.append(fmt(vb))
    if not la or la == lb:
        return "A", "B"
    return " ".join(la), " ".join(lb)


def _kind(op_type: str) -> str:
    """Operator identity across runs: name without dtype tags ('Convolution IGEMM')."""
    base = op_type.split(" (")[0]
    tail = op_type.split(")")[-1].strip() if ")" in op_type else ""
    return f"{base} {tail}".strip()


# ---------------------------------------------------------------- choosing the runs


def parse_filters(spec: str) -> dict:
    """`threads=2,dtype=int8` (or `run=<id>`, `sme2=on`) to typed run filters; bad keys or values
    are NameErrors saying what is accepted."""
    out: dict = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise NameError_(f"run selector {part!r} is not key=value", "e.g. threads=2, dtype=int8, run=<run id>")
        out.update(check_filter(key, value))
    return out


def check_filter(key: str, value) -> dict:
    """One validated, typed filter."""
    if key not in views.RUN_FILTERS:
        raise NameError_(f"unknown run selector {key!r}", f"use one of: {', '.join(views.RUN_FILTERS)}")
    if key == "threads":
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise NameError_(f"threads={value!r} is not a number", "e.g. threads=2") from None
        return {key: limits.check_threads(n, "threads=")}
    if key == "sme2":
        v = str(value).lower()
        if v not in ("on", "off", "true", "false"):
            raise NameError_(f"sme2={value!r} is not on or off", "sme2=on or sme2=off")
        return {key: v in ("on", "true")}
    checks = {
        "run": lambda v: names.file_component("run id", v),
        "model": names.model_name,
        "dtype": names.dtype,
        "backend": names.backend,
        "device": names.device_name,
        "size": names.size_name,
        "runner": names.runner_name,
        "variant": lambda v: names.Variant.parse(v).key,
        "target": lambda v: names.Target.parse(v).key,
    }
    return {key: checks[key](str(value))}


def select(wh: Warehouse, filters: dict, which: str = "run") -> Side:
    """The one current run matching `filters`; a WarehouseError lists what there is when none or
    several match (and which field tells the candidates apart)."""
    runs = views.find_runs(wh, filters)
    said = ", ".join(f"{k}={v}" for k, v in filters.items()) or "no filter"
    if runs.empty:
        have = views.find_runs(wh, {k: v for k, v in filters.items() if k in ("model", "variant", "dtype")})
        listing = "; ".join(f"{r.variant} {r.target} t{r.threads} {r['size']}" for _, r in have.head(8).iterrows())
        raise WarehouseError(
            f"no current run matches {which} ({said})",
            f"runs there are: {listing or 'none'}. Profile it first (sme2 profile ...), or change the selector",
        )
    if len(runs) > 1:
        varying = [f for f in FIELDS if runs[f].nunique() > 1]
        opts = ", ".join(sorted({f"{f}={v}" for f in varying for v in runs[f].astype(str)}))
        raise WarehouseError(
            f"{len(runs)} current runs match {which} ({said}): they differ in {', '.join(varying) or 'start time'}",
            f"add one of {opts} to the selector, or pass run ids" if varying else "pass run ids",
        )
    return Side.of(runs.iloc[0])


def side_of_run(wh: Warehouse, run_id: str) -> Side:
    return select(wh, check_filter("run", run_id), which=f"run {run_id}")


# ---------------------------------------------------------------- the comparison


def compare_runs(wh: Warehouse, a: Side, b: Side) -> Comparison:
    """Run a (baseline) vs run b (candidate), from their warehouse rows."""
    if a.run_id == b.run_id:
        raise WarehouseError(f"both sides are run {a.run_id}", "compare two different runs")
    if (a.variant, a.size) == (b.variant, b.size) and a.pte_sha256 and b.pte_sha256 and a.pte_sha256 != b.pte_sha256:
        # One label, two programs (a same-named package from another folder, a re-export between
        # the runs): the difference would be the programs', not the targets' or thread counts'.
        raise WarehouseError(
            f"runs {a.run_id} and {b.run_id} are both {a.variant} ({a.size}) but ran different programs "
            f"(.pte sha256 {a.pte_sha256[:12]} vs {b.pte_sha256[:12]})",
            "profile both sides with the same export (re-run the older one), or compare run ids you know match",
        )
    la, lb = labels(a, b)
    a, b = replace(a, label=la), replace(b, label=lb)
    emulated = a.emulated or b.emulated
    ids = [a.run_id, b.run_id]

    samples = views.latency_samples(wh, ids, "timing")
    s_a = samples[samples.run_id == a.run_id].latency_ms.to_numpy()
    s_b = samples[samples.run_id == b.run_id].latency_ms.to_numpy()
    if not len(s_a) or not len(s_b):
        raise WarehouseError(
            f"run {a.run_id if not len(s_a) else b.run_id} has no timing samples in the warehouse",
            "re-ingest it: sme2 warehouse rebuild",
        )
    e2e = {"a_ms": float(np.median(s_a)), "b_ms": float(np.median(s_b))}
    if not emulated:
        sp, lo, hi = speedup_ci(s_a, s_b)
        e2e.update(speedup=sp, ci_low=lo, ci_high=hi)

    cats = views.category_stats(wh, ids, "blog")
    c_a, c_b = cats[cats.run_id == a.run_id].set_index("category"), cats[cats.run_id == b.run_id].set_index("category")
    rows = []
    for c in BLOG_ORDER:
        a_ms, b_ms = float(c_a.median_ms.get(c, 0.0)), float(c_b.median_ms.get(c, 0.0))
        row = {
            "category": c,
            "a_ms": a_ms,
            "b_ms": b_ms,
            "share_a": float(c_a.share_of_execute.get(c, 0.0)),
            "share_b": float(c_b.share_of_execute.get(c, 0.0)),
            "ops_a": int(c_a.ops.get(c, 0)),
            "ops_b": int(c_b.ops.get(c, 0)),
        }
        if not emulated:
            row["speedup"] = a_ms / b_ms if b_ms > 0 else float("nan")
        rows.append(row)
    categories = pd.DataFrame(rows)

    ops = views.op_stats(wh, ids)
    ops["kind"] = ops.op_type.map(_kind)
    ops["family"] = ops.op_type.map(kernels.family)
    agg = (
        ops.groupby(["run_id", "kind"])
        .agg(
            op_types=("op_type", lambda s: " | ".join(sorted(set(s)))),
            families=("family", lambda s: ",".join(sorted(set(s)))),
            category=("category", "first"),
            instances=("instances", "sum"),
            median_ms=("median_ms", "sum"),
        )
        .reset_index()
    )
    g_a, g_b = agg[agg.run_id == a.run_id].set_index("kind"), agg[agg.run_id == b.run_id].set_index("kind")
    op_rows = []
    for kind in sorted(set(g_a.index) | set(g_b.index)):
        r = {
            "operator": kind,
            "category": (g_a if kind in g_a.index else g_b).category[kind],
            "a_types": g_a.op_types.get(kind, "-"),
            "b_types": g_b.op_types.get(kind, "-"),
            "a_kernels": g_a.families.get(kind, "-"),
            "b_kernels": g_b.families.get(kind, "-"),
            "instances_a": int(g_a.instances.get(kind, 0)),
            "instances_b": int(g_b.instances.get(kind, 0)),
            "a_ms": float(g_a.median_ms.get(kind, 0.0)),
            "b_ms": float(g_b.median_ms.get(kind, 0.0)),
        }
        if not emulated:
            r["speedup"] = r["a_ms"] / r["b_ms"] if r["b_ms"] > 0 else float("nan")
        op_rows.append(r)
    operators = pd.DataFrame(op_rows).sort_values("a_ms", ascending=False, ignore_index=True)

    def fams(col: str) -> pd.Series:
        return operators.groupby("category")[col].apply(
            lambda s: ",".join(sorted({f for v in s for f in v.split(",") if f and f != "-"}))
        )

    categories["kernels_a"] = categories.category.map(fams("a_kernels")).fillna("-")
    categories["kernels_b"] = categories.category.map(fams("b_kernels")).fillna("-")
    bottleneck = {
        "a": categories.loc[categories.a_ms.idxmax(), "category"],
        "b": categories.loc[categories.b_ms.idxmax(), "category"],
    }
    counts, counts_execute = count_categories(wh, a, b)
    return Comparison(a, b, e2e, categories, operators, bottleneck, counts, counts_execute)


def _ratio(x: float, y: float) -> float:
    return float(x) / float(y) if y else float("nan")


def count_categories(wh: Warehouse, a: Side, b: Side) -> tuple[pd.DataFrame | None, dict | None]:
    """Instruction counts of two counted runs per category: instructions and estimated cycles of
    each, their ratio a/b (> 1: b retires fewer), each category's share of the operators' estimated
    cycles, and the SME share of its instructions. (None, None) unless both runs were counted."""
    ids = [a.run_id, b.run_id]
    ex = views.execute_counts(wh, ids).set_index("run_id")
    if not {a.run_id, b.run_id} <= set(ex.index):
        return None, None
    ops = views.op_counts(wh, ids)
    per = ops.groupby(["run_id", "category"])[["instructions", "sme_instructions", "est_cycles"]].sum()
    totals = ops.groupby("run_id").est_cycles.sum()
    rows = []
    for c in BLOG_ORDER:
        ra = per.loc[(a.run_id, c)] if (a.run_id, c) in per.index else None
        rb = per.loc[(b.run_id, c)] if (b.run_id, c) in per.index else None
        get = lambda r, k: float(r[k]) if r is not None else 0.0  # noqa: E731
        rows.append(
            {
                "category": c,
                "a_instructions": int(get(ra, "instructions")),
                "b_instructions": int(get(rb, "instructions")),
                "instructions_ratio": _ratio(get(ra, "instructions"), get(rb, "instructions")),
                "a_est_cycles": get(ra, "est_cycles"),
                "b_est_cycles": get(rb, "est_cycles"),
                "est_cycles_ratio": _ratio(get(ra, "est_cycles"), get(rb, "est_cycles")),
                "share_a": _ratio(get(ra, "est_cycles"), totals.get(a.run_id, 0.0)),
                "share_b": _ratio(get(rb, "est_cycles"), totals.get(b.run_id, 0.0)),
                "sme_share_a": _ratio(get(ra, "sme_instructions"), get(ra, "instructions")),
                "sme_share_b": _ratio(get(rb, "sme_instructions"), get(rb, "instructions")),
            }
        )
    xa, xb = ex.loc[a.run_id], ex.loc[b.run_id]
    execute = {
        "a_instructions": int(xa.instructions),
        "b_instructions": int(xb.instructions),
        "instructions_ratio": _ratio(xa.instructions, xb.instructions),
        "a_est_cycles": float(xa.est_cycles),
        "b_est_cycles": float(xb.est_cycles),
        "est_cycles_ratio": _ratio(xa.est_cycles, xb.est_cycles),
        "a_sme_instructions": int(xa.sme_instructions),
        "b_sme_instructions": int(xb.sme_instructions),
        "cost_model": xa.cost_model if xa.cost_model == xb.cost_model else f"{xa.cost_model} / {xb.cost_model}",
    }
    return pd.DataFrame(rows), execute


def counts_table(c: Comparison) -> pd.DataFrame | None:
    """The case study's table from instruction counts (both runs counted): per category the
    estimated cycles of each run and their ratio, each category's share of estimated cycles, the
    instructions ratio and the SME share of run B's instructions. None when not both were counted."""
    if c.counts is None:
        return None
    df, la, lb = c.counts, c.a.label, c.b.label

    def pct(s: pd.Series) -> list[str]:
        return [f"{100 * v:.1f}%" if v == v else "-" for v in s]

    def x(s: pd.Series) -> list[str]:
        return [f"{v:.2f}x" if v == v else "-" for v in s]

    return pd.DataFrame(
        {
            "category": df.category,
            f"est. cycles {la}": [f"{v:,.0f}" for v in df.a_est_cycles],
            f"est. cycles {lb}": [f"{v:,.0f}" for v in df.b_est_cycles],
            f"{la}/{lb}": x(df.est_cycles_ratio),
            f"share {la}": pct(df.share_a),
            f"share {lb}": pct(df.share_b),
            f"instructions {la}/{lb}": x(df.instructions_ratio),
            f"SME share {lb}": pct(df.sme_share_b),
        }
    )


def compare_ids(wh: Warehouse, run_a: str, run_b: str) -> Comparison:
    """Two runs by id (a: baseline, b: candidate)."""
    return compare_runs(wh, side_of_run(wh, run_a), side_of_run(wh, run_b))


def compare_selected(
    wh: Warehouse, common: dict, over_a: dict, over_b: dict, which: tuple[str, str] = ("run A", "run B")
) -> Comparison:
    """Two runs chosen by filters: what both share (`common`) plus each side's own (`over_a`,
    `over_b`), e.g. common {variant, device} with threads=1 vs threads=2. A side that names its run
    (`run=<id>`) is that run: the common filters do not apply to it. `which` names the two sides in
    errors (`sme2 compare --a/--b`)."""

    def side(over: dict, label: str) -> Side:
        return select(wh, over if "run" in over else {**common, **over}, label)

    return compare_runs(wh, side(over_a, which[0]), side(over_b, which[1]))


def compare(wh: Warehouse, variant: str, device: str, threads: int | None = None) -> Comparison:
    """SME2 off (a) vs on (b) of one variant on one device: the newest pair at one thread count and
    size (the smallest thread count with a pair, unless `threads` is given)."""
    filters = {"variant": variant, "device": device, **({"threads": threads} if threads is not None else {})}
    runs = views.find_runs(wh, filters).sort_values(["threads", "size"], kind="stable")
    if runs.empty and views.find_runs(wh, {"device": device}).empty:
        have = sorted(set(views.find_runs(wh, {}).device)) if wh.path.exists() else []
        raise WarehouseError(
            f"device {device!r} has no runs in the warehouse",
            f"devices with runs: {', '.join(have) or 'none'}; `sme2 devices` lists the devices this machine knows",
        )
    pairs = runs.groupby(["threads", "size"]).filter(lambda g: set(g.sme2) == {True, False})
    if pairs.empty:
        have = ", ".join(f"{'on' if r.sme2 else 'off'}/t{r.threads}/{r['size']}" for _, r in runs.iterrows()) or "none"
        raise WarehouseError(
            f"no SME2 on/off pair of {variant} on {device} in the warehouse (have: {have})",
            f"profile both targets: sme2 profile --model {variant.split('-')[0]} --dtype {variant.split('-', 1)[1]} "
            f"--target {device}.sme2-on,{device}.sme2-off (the on target needs a device with SME2; "
            "without one, the emulated pair: --device armv9-qemu)",
        )
    first = pairs.iloc[0]
    pair = pairs[(pairs.threads == first.threads) & (pairs["size"] == first["size"])]
    off = Side.of(pair[~pair.sme2].iloc[0])
    on = Side.of(pair[pair.sme2].iloc[0])
    return compare_runs(wh, off, on)


def blog_table(c: Comparison) -> pd.DataFrame:
    """The case study's table: category, ms A -> B, speedup, shares, kernels (emulated: no speedup
    column, operator counts instead, times labelled emulated). Columns are named after the runs'
    labels (`ms off`, `ms on` for an SME2 pair; `ms t1`, `ms t2` for thread counts)."""
    df = c.categories.copy()
    la, lb = c.a.label, c.b.label
    kernels_col = f"kernels {la} -> {lb}"
    if c.emulated:
        return pd.DataFrame(
            {
                "category": df.category,
                f"ops ({la}/{lb})": [f"{x}/{y}" for x, y in zip(df.ops_a, df.ops_b)],
                kernels_col: [f"{x} -> {y}" for x, y in zip(df.kernels_a, df.kernels_b)],
                f"emulated ms {la}": df.a_ms.round(3),
                f"emulated ms {lb}": df.b_ms.round(3),
                f"share {lb}": (100 * df.share_b).round(1).astype(str) + "%",
            }
        )
    return pd.DataFrame(
        {
            "category": df.category,
            f"ms {la}": df.a_ms.round(3),
            f"ms {lb}": df.b_ms.round(3),
            "speedup": df.speedup.round(2).astype(str) + "x",
            f"share {la}": (100 * df.share_a).round(1).astype(str) + "%",
            f"share {lb}": (100 * df.share_b).round(1).astype(str) + "%",
            kernels_col: [f"{x} -> {y}" for x, y in zip(df.kernels_a, df.kernels_b)],
        }
    )


def operator_table(c: Comparison, n: int = 10) -> pd.DataFrame:
    """The slowest operators of run A with their kernels, instances, times and speedups."""
    cols = ["operator", "category", "a_kernels", "b_kernels", "instances_a", "a_ms", "b_ms"]
    cols += [] if c.emulated else ["speedup"]
    out = c.operators.head(n)[cols]
    return out.rename(
        columns={
            "a_kernels": f"kernels {c.a.label}",
            "b_kernels": f"kernels {c.b.label}",
            "instances_a": "instances",
            "a_ms": f"ms {c.a.label}",
            "b_ms": f"ms {c.b.label}",
        }
    )


def dtype_side_by_side(wh: Warehouse, model: str, device: str, dtypes=("int8", "fp16")) -> pd.DataFrame:
    """INT8 and FP16 (or any dtypes) of one model side by side, as the blog shows them."""
    frames = []
    for d in dtypes:
        try:
            c = compare(wh, f"{model}-{d}", device)
        except WarehouseError:
            continue
        t = blog_table(c).set_index("category")
        t.columns = [f"{d.upper()} {col}" for col in t.columns]
        frames.append(t)
    return pd.concat(frames, axis=1).reset_index() if frames else pd.DataFrame()
