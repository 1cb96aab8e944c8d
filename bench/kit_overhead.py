"""Runner overhead and ETDump ingestion speed, measured side by side in one run.

    python bench/kit_overhead.py [--model tiny_seg] [--size small] [--iterations 200]

Prints: native end-to-end median vs the sum of operator medians, and where the rest of
Method::execute goes (inside delegate calls but outside XNNPACK's operator events, and between
instructions); pybind vs native end-to-end medians; and the time to read a 1000-iteration ETDump
with kit.trace against executorch's Inspector.to_dataframe() on the same file, alternating, after
checking that both give the same per-event numbers."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny_seg")
    ap.add_argument("--size", default="small")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--trace-iterations", type=int, default=1000)
    ap.add_argument("--home", default=None)
    a = ap.parse_args()

    from kit.core.home import DataRoot
    from kit.devices import inventory
    from kit.devices.transports.local import LocalTransport
    from kit.export import exporter
    from kit.models import registry
    from kit.profile import session
    from kit.runners import invoke
    from kit.runners.build import build_runner
    from kit.stats import categories, summary
    from kit.trace import etdump

    root = DataRoot.resolve(a.home)
    exp = exporter.export_variant(registry.get(a.model), "fp32", a.size, root)
    binary = build_runner(root)
    host = inventory.resolve("host.sme2-off", root)
    rules = categories.load_rules()

    print(f"model {a.model} fp32 {a.size}, {a.iterations} iterations, 1 thread")
    results = {}
    for kind in ("native", "pybind"):
        r = session.run_session(
            root,
            exp,
            host,
            session.Measurement(threads=1, iterations=a.iterations, warmup=5, runner_kind=kind, binary=binary),
        )
        results[kind] = r.analysis
    n, p = results["native"], results["pybind"]
    op_sum = float(n.op_stats.median_ms.sum())
    print(f"native e2e median            {n.e2e['median_ms']:.4f} ms")
    print(f"native Method::execute median {n.execute['median_ms']:.4f} ms")
    print(
        f"sum of operator medians      {op_sum:.4f} ms  -> operators explain {op_sum / n.e2e['median_ms']:.1%} of e2e, {op_sum / n.execute['median_ms']:.1%} of execute"
    )
    print(f"native overhead outside ops  {n.e2e['median_ms'] - op_sum:.4f} ms per inference")
    print(
        f"pybind e2e median            {p.e2e['median_ms']:.4f} ms  -> pybind/native = {p.e2e['median_ms'] / n.e2e['median_ms']:.3f}x"
    )

    b = n.execute_breakdown
    print("where Method::execute goes (medians per iteration, kit.stats.summary.execute_breakdown):")
    print(f"  operator events (XNNPACK ops + portable kernels)      {b['operators_ms']:.4f} ms")
    print(
        f"  delegate calls minus their operators ({b['delegate_calls']} calls)       {b['delegate_overhead_ms']:.4f} ms"
    )
    print(f"  executor dispatch between instructions ({b['instructions']} instr.)  {b['dispatch_ms']:.4f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        out = invoke.run_program(
            "native",
            invoke.RunRequest(
                pte=exp.pte, inputs=exp.inputs, iterations=a.trace_iterations, warmup=0, threads=1, etdump=True
            ),
            Path(tmp),
            LocalTransport("host"),
            binary,
        )
        size_mb = out.etdump.stat().st_size / 1e6
        from executorch.devtools import Inspector

        def inspector():
            return Inspector(etdump_path=str(out.etdump), etrecord=str(exp.etrecord)).to_dataframe()

        tr = etdump.ingest(out.etdump, exp.program_map)
        worst = same_numbers(tr, inspector())
        ours, theirs, analysed = [], [], []
        for _ in range(3):  # alternating, so load on the machine hits both alike
            t = time.perf_counter()
            etdump.ingest(out.etdump, exp.program_map)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            inspector()
            theirs.append(time.perf_counter() - t)
            t = time.perf_counter()
            summary.analyze(etdump.ingest(out.etdump, exp.program_map), [1.0] * 10, rules)
            analysed.append(time.perf_counter() - t)
    ratio = statistics.median(theirs) / statistics.median(ours)
    print(f"\nETDump of {a.trace_iterations} iterations: {size_mb:.2f} MB, {len(tr.rows):,} rows")
    print(f"same per-event numbers as Inspector: yes (largest difference {worst:.2g} ms)")
    print(f"kit.trace.ingest                 {statistics.median(ours):.3f} s (median of 3)")
    print(f"kit.trace.ingest + analyze       {statistics.median(analysed):.3f} s")
    print(
        f"Inspector(...).to_dataframe()    {statistics.median(theirs):.3f} s  -> ingest is {ratio:.1f}x faster; goal >= 10x: {'met' if ratio >= 10 else 'NOT met'}"
    )


def same_numbers(trace, frame) -> float:
    """Check our rows against Inspector's: its Execute block has one row per event position with
    one duration per iteration; each of our rows is (iteration, seq). Returns the largest absolute
    difference (Inspector subtracts two scaled timestamps for delegate events, we scale the exact
    integer difference: they differ by float rounding only). Raises on any real difference."""
    import numpy as np

    execute = frame[frame.event_block_name == "Execute"].reset_index(drop=True)
    raw = np.array([list(x) for x in execute.raw])  # position x iteration
    rows = trace.rows
    assert raw.shape == (rows.seq.max() + 1, trace.iterations), (raw.shape, trace.iterations)
    names = execute.event_name.to_numpy()[rows.seq.to_numpy()]
    delegated = rows.row_kind.eq("operator") & rows.delegated
    assert (names[delegated.to_numpy()] == rows.event_name[delegated].to_numpy()).all(), "event names differ"
    theirs = raw[rows.seq.to_numpy(), rows.iteration.to_numpy()]
    diff = np.abs(rows.duration_ms.to_numpy() - theirs)
    assert np.all(diff <= 1e-9 * np.maximum(np.abs(theirs), 1.0)), f"durations differ by up to {diff.max()} ms"
    return float(diff.max())


if __name__ == "__main__":
    main()
