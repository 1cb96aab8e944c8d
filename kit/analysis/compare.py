"""SME2 on versus off for one model variant on one device: the case study's table, from the
warehouse, with the end-to-end speedup's bootstrap interval, per-category and per-operator
speedups, the runtime share of each category before and after, and the bottleneck shift.

On emulated targets the same table shows operator counts, kernels and emulated times, clearly
labelled, and no speedups: an emulator's timings say nothing about hardware speed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kit.core.errors import WarehouseError
from kit.stats import robust
from kit.stats.categories import BLOG_ORDER
from kit.store.warehouse import Warehouse
from kit.trace import kernels


def _median_ratio(off: np.ndarray, on: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(off, axis=axis) / np.median(on, axis=axis)


def speedup_ci(off: np.ndarray, on: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(median_off / median_on, low, high): percentile bootstrap, each run's samples resampled on their own."""
    off, on = np.asarray(off, float), np.asarray(on, float)
    lo, hi = robust.bootstrap_ci((off, on), _median_ratio, level, seed)
    return float(_median_ratio(off, on)), lo, hi


@dataclass
class Comparison:
    variant: str
    device: str
    threads: int
    size: str
    emulated: bool
    run_on: str
    run_off: str
    e2e: dict  # off_ms, on_ms, speedup, ci_low, ci_high (no speedup keys when emulated)
    categories: pd.DataFrame  # category, off_ms, on_ms, speedup, share_off, share_on, ops_off, ops_on
    operators: pd.DataFrame  # op kind, off/on op types and kernels, off_ms, on_ms, speedup
    bottleneck: dict = field(default_factory=dict)  # largest category off and on

    def headline(self) -> str:
        label = "EMULATED (times are not hardware times)" if self.emulated else "hardware"
        if self.emulated:
            return f"{self.variant} on {self.device} [{label}], {self.threads} thread(s): SME2 off {self.e2e['off_ms']:.2f} ms, on {self.e2e['on_ms']:.2f} ms (emulated)"
        return f"{self.variant} on {self.device}, {self.threads} thread(s): {self.e2e['off_ms']:.2f} -> {self.e2e['on_ms']:.2f} ms, {self.e2e['speedup']:.2f}x (95% CI {self.e2e['ci_low']:.2f}-{self.e2e['ci_high']:.2f})"


def _kind(op_type: str) -> str:
    """Operator identity across SME2 on/off: name without dtype tags ('Convolution IGEMM')."""
    base = op_type.split(" (")[0]
    tail = op_type.split(")")[-1].strip() if ")" in op_type else ""
    return f"{base} {tail}".strip()


def compare(wh: Warehouse, variant: str, device: str, threads: int | None = None) -> Comparison:
    runs = wh.query(
        "SELECT run_id, sme2, threads, size, emulated FROM current_runs WHERE variant = ? AND device = ? AND (? IS NULL OR threads = ?) ORDER BY threads, size",
        [variant, device, threads, threads],
    )
    pairs = runs.groupby(["threads", "size"]).filter(lambda g: set(g.sme2) == {True, False})
    if pairs.empty:
        have = ", ".join(f"{'on' if r.sme2 else 'off'}/t{r.threads}/{r.size}" for r in runs.itertuples()) or "none"
        raise WarehouseError(
            f"no SME2 on/off pair of {variant} on {device} in the warehouse (have: {have})",
            f"profile both targets: sme2 profile --model {variant.split('-')[0]} --dtype {variant.split('-', 1)[1]} "
            f"--target {device}.sme2-on,{device}.sme2-off (the on target needs a device with SME2; "
            "without one, the emulated pair: --device armv9-qemu)",
        )
    first = pairs.iloc[0]
    t, size = int(first.threads), first["size"]
    pair = pairs[(pairs.threads == t) & (pairs["size"] == size)]
    on_id = pair[pair.sme2].run_id.iloc[0]
    off_id = pair[~pair.sme2].run_id.iloc[0]
    emulated = bool(pair.emulated.any())

    samples = wh.query(
        "SELECT run_id, latency_ms FROM latency_samples WHERE kind = 'timing' AND list_contains(?, run_id)",
        [[on_id, off_id]],
    )
    s_on, s_off = (
        samples[samples.run_id == on_id].latency_ms.to_numpy(),
        samples[samples.run_id == off_id].latency_ms.to_numpy(),
    )
    e2e = {"off_ms": float(np.median(s_off)), "on_ms": float(np.median(s_on))}
    if not emulated:
        sp, lo, hi = speedup_ci(s_off, s_on)
        e2e.update(speedup=sp, ci_low=lo, ci_high=hi)

    cats = wh.query(
        "SELECT run_id, category, median_ms, share_of_execute, ops FROM category_stats WHERE scheme = 'blog' AND list_contains(?, run_id)",
        [[on_id, off_id]],
    )
    c_on, c_off = cats[cats.run_id == on_id].set_index("category"), cats[cats.run_id == off_id].set_index("category")
    rows = []
    for c in BLOG_ORDER:
        off_ms, on_ms = float(c_off.median_ms.get(c, 0.0)), float(c_on.median_ms.get(c, 0.0))
        row = {
            "category": c,
            "off_ms": off_ms,
            "on_ms": on_ms,
            "share_off": float(c_off.share_of_execute.get(c, 0.0)),
            "share_on": float(c_on.share_of_execute.get(c, 0.0)),
            "ops_off": int(c_off.ops.get(c, 0)),
            "ops_on": int(c_on.ops.get(c, 0)),
        }
        if not emulated:
            row["speedup"] = off_ms / on_ms if on_ms > 0 else float("nan")
        rows.append(row)
    categories = pd.DataFrame(rows)

    ops = wh.query(
        "SELECT run_id, op_type, category, instances, median_ms FROM op_stats WHERE list_contains(?, run_id)",
        [[on_id, off_id]],
    )
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
    a_on, a_off = agg[agg.run_id == on_id].set_index("kind"), agg[agg.run_id == off_id].set_index("kind")
    op_rows = []
    for kind in sorted(set(a_on.index) | set(a_off.index)):
        r = {
            "operator": kind,
            "category": (a_off if kind in a_off.index else a_on).category[kind],
            "off_types": a_off.op_types.get(kind, "-"),
            "on_types": a_on.op_types.get(kind, "-"),
            "off_kernels": a_off.families.get(kind, "-"),
            "on_kernels": a_on.families.get(kind, "-"),
            "instances_off": int(a_off.instances.get(kind, 0)),
            "instances_on": int(a_on.instances.get(kind, 0)),
            "off_ms": float(a_off.median_ms.get(kind, 0.0)),
            "on_ms": float(a_on.median_ms.get(kind, 0.0)),
        }
        if not emulated:
            r["speedup"] = r["off_ms"] / r["on_ms"] if r["on_ms"] > 0 else float("nan")
        op_rows.append(r)
    operators = pd.DataFrame(op_rows).sort_values("off_ms", ascending=False, ignore_index=True)
    fams = lambda col: operators.groupby("category")[col].apply(
        lambda s: ",".join(sorted({f for v in s for f in v.split(",") if f and f != "-"}))
    )  # noqa: E731
    categories["kernels_off"] = categories.category.map(fams("off_kernels")).fillna("-")
    categories["kernels_on"] = categories.category.map(fams("on_kernels")).fillna("-")
    bottleneck = {
        "off": categories.loc[categories.off_ms.idxmax(), "category"],
        "on": categories.loc[categories.on_ms.idxmax(), "category"],
    }
    return Comparison(variant, device, t, size, emulated, on_id, off_id, e2e, categories, operators, bottleneck)


def blog_table(c: Comparison) -> pd.DataFrame:
    """The case study's table: category, ms off -> on, speedup, share with SME2 on (emulated: no
    speedup column, operator counts instead, times labelled emulated)."""
    df = c.categories.copy()
    if c.emulated:
        out = pd.DataFrame(
            {
                "category": df.category,
                "ops (off/on)": [f"{a}/{b}" for a, b in zip(df.ops_off, df.ops_on)],
                "kernels off -> on": [f"{a} -> {b}" for a, b in zip(df.kernels_off, df.kernels_on)],
                "emulated ms off": df.off_ms.round(3),
                "emulated ms on": df.on_ms.round(3),
                "share on": (100 * df.share_on).round(1).astype(str) + "%",
            }
        )
    else:
        out = pd.DataFrame(
            {
                "category": df.category,
                "ms off": df.off_ms.round(3),
                "ms on": df.on_ms.round(3),
                "speedup": df.speedup.round(2).astype(str) + "x",
                "share off": (100 * df.share_off).round(1).astype(str) + "%",
                "share on": (100 * df.share_on).round(1).astype(str) + "%",
                "kernels off -> on": [f"{a} -> {b}" for a, b in zip(df.kernels_off, df.kernels_on)],
            }
        )
    return out


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
