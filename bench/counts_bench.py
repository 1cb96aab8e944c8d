"""Instruction counts on the emulated CPU: what counting costs, and what it shows for the case study.

1. The plugin-capable QEMU's build time (from its build record; --rebuild builds it again into a
   fresh cache and times that).
2. The counting run's wall time against the plain emulated run of the same program, measured side
   by side (alternating, --reps each): tiny_seg fp32 small on armv9-qemu.sme2-on by default.
3. The case study from counts: SqueezeSAM int8 (size full by default) on the emulated SME2 pair,
   per category the estimated cycles SME2 off and on, their ratio and each category's share, beside
   the published vivo X300 numbers (PyTorch/Arm blog, Jan 2026) and the difference. The estimates
   come from instruction counts and the cost model (kit/counts/costmodel.toml), never from time.

    python bench/counts_bench.py [--model squeeze_sam] [--dtype int8] [--size full] [--reps 3] [--rebuild]

Needs `sme2 setup --counts`. Part 3 emulates full-size SqueezeSAM: tens of minutes on 2 cores."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

# The case study (PyTorch/Arm blog "Accelerating On-Device ML Inference with ExecuTorch and Arm SME2",
# Jan 2026): SqueezeSAM INT8, 1 core of a vivo X300 (Dimensity 9500), SME2 off -> on.
PUBLISHED_INT8 = {
    "e2e_ms": (556.0, 304.0),
    "Convolution_ms": (309.7, 69.8),
    "Data Movement_ms": (123.0, 123.0),
    "Data Movement share on": 0.41,
}


def overhead(root, reps: int) -> dict:
    from kit.counts import qemu_build
    from kit.devices import inventory
    from kit.export import exporter
    from kit.models import registry
    from kit.runners import invoke, recipes

    exp = exporter.export_variant(registry.get("tiny_seg"), "fp32", "small", root)
    resolved = inventory.resolve("armv9-qemu.sme2-on", root)
    binary = recipes.runner_for(resolved, root, "native")
    tools = qemu_build.load_counting(root)
    plain, counted = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(reps):
            for kind, times in (("plain", plain), ("counting", counted)):
                out = Path(tmp) / f"{kind}{i}"
                transport = resolved.transport
                if kind == "counting":
                    out.mkdir()
                    transport = transport.counting(tools, out / "counts.txt")
                req = invoke.RunRequest(exp.pte, exp.inputs, iterations=2, warmup=1, etdump=True)
                t0 = time.perf_counter()
                invoke.run_program("native", req, out, transport, binary)
                times.append(time.perf_counter() - t0)
    return {"plain_s": statistics.median(plain), "counting_s": statistics.median(counted)}


def case_study(root, model: str, dtype: str, size: str) -> list[dict]:
    from kit import pipeline
    from kit.analysis import compare
    from kit.core.settings import Measure
    from kit.profile import session
    from kit.store.warehouse import Warehouse

    plan = session.ProfilePlan(
        model=model,
        dtypes=[dtype],
        targets=["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"],
        counts=True,
        measure=Measure(size=size, iterations=2, warmup=1, timeout_s=7200),
    )
    pipeline.profile_and_store(plan, root, progress=print)
    c = compare.compare(Warehouse.at(root), f"{model}-{dtype}", "armv9-qemu")
    print(c.headline())
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="squeeze_sam")
    ap.add_argument("--dtype", default="int8")
    ap.add_argument("--size", default="full")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rebuild", action="store_true", help="build the counting QEMU again in a fresh cache, timed")
    ap.add_argument("--skip-case-study", action="store_true")
    ap.add_argument("--home", default=None)
    a = ap.parse_args()

    from kit.core.home import DataRoot
    from kit.counts import qemu_build
    from kit.devices import toolsetup

    root = DataRoot.resolve(a.home or tempfile.mkdtemp(prefix="sme2-counts-bench-"))
    toolsetup.setup(root)
    if a.rebuild:
        os.environ[qemu_build.CACHE_ENV] = tempfile.mkdtemp(prefix="sme2-build-cache-")
        t0 = time.perf_counter()
        tools = qemu_build.setup_counting(root)
        print(f"counting QEMU + plugin built from source in {time.perf_counter() - t0:.0f} s ({os.cpu_count()} cores)")
    else:
        tools = qemu_build.setup_counting(root)
    print(f"counting QEMU build (recorded): {tools.manifest['build_seconds']:.0f} s for {tools.manifest['source']}")

    o = overhead(root, a.reps)
    print(
        f"tiny_seg fp32 small, 1 warmup + 2 executions traced, median of {a.reps}: plain emulated run "
        f"{o['plain_s']:.2f} s, counting run {o['counting_s']:.2f} s: {o['counting_s'] / o['plain_s']:.2f}x"
    )
    if a.skip_case_study:
        return
    c = case_study(root, a.model, a.dtype, a.size)
    from kit.analysis.compare import counts_table

    print(counts_table(c).to_string(index=False))
    by = c.counts.set_index("category")
    x = c.counts_execute
    pub = PUBLISHED_INT8
    print("\nagainst the published case study (hardware ms, SME2 off -> on; ours: estimated cycles from counts)")
    print(f"  end to end      published {pub['e2e_ms'][0] / pub['e2e_ms'][1]:.2f}x   ours {x['est_cycles_ratio']:.2f}x")
    conv = pub["Convolution_ms"]
    print(
        f"  Convolution     published {conv[0] / conv[1]:.2f}x   ours {by.loc['Convolution', 'est_cycles_ratio']:.2f}x"
    )
    print(f"  GEMM            published -        ours {by.loc['GEMM', 'est_cycles_ratio']:.2f}x")
    dm = pub["Data Movement_ms"]
    print(
        f"  Data Movement   published {dm[0] / dm[1]:.2f}x   ours {by.loc['Data Movement', 'est_cycles_ratio']:.2f}x; "
        f"share with SME2 on: published {pub['Data Movement share on']:.0%}, ours "
        f"{by.loc['Data Movement', 'share_b']:.1%} (off {by.loc['Data Movement', 'share_a']:.1%})"
    )


if __name__ == "__main__":
    main()
