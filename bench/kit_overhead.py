"""Runner overhead and ETDump ingestion speed, measured side by side in one run.

    python bench/kit_overhead.py [--model tiny_seg] [--size small] [--iterations 200]

Prints: native end-to-end median vs the sum of operator medians (runtime overhead outside the
operators), pybind vs native end-to-end medians, and the time to ingest a 1000-iteration ETDump
with kit.trace against executorch's Inspector.to_dataframe() on the same file."""

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
            root, exp, host, threads=1, iterations=a.iterations, warmup=5, runner_kind=kind, binary=binary
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
        ours = []
        for _ in range(3):
            t = time.perf_counter()
            tr = etdump.ingest(out.etdump, exp.program_map)
            summary.analyze(tr, [1.0] * 10, rules)
            ours.append(time.perf_counter() - t)
        ingest_only = []
        for _ in range(3):
            t = time.perf_counter()
            etdump.ingest(out.etdump, exp.program_map)
            ingest_only.append(time.perf_counter() - t)
        from executorch.devtools import Inspector

        theirs = []
        for _ in range(3):
            t = time.perf_counter()
            Inspector(etdump_path=str(out.etdump), etrecord=str(exp.etrecord)).to_dataframe()
            theirs.append(time.perf_counter() - t)
    events = len(tr.rows)
    print(f"\nETDump of {a.trace_iterations} iterations: {size_mb:.2f} MB, {events} rows")
    print(f"kit.trace.ingest                 {statistics.median(ingest_only):.3f} s (median of 3)")
    print(f"kit.trace.ingest + analyze       {statistics.median(ours):.3f} s")
    print(
        f"Inspector(...).to_dataframe()    {statistics.median(theirs):.3f} s  -> ingest is {statistics.median(theirs) / statistics.median(ingest_only):.1f}x faster"
    )


if __name__ == "__main__":
    main()
