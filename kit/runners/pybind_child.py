"""The `pybind` runner: the executorch Python runtime, always in a child process.

A corrupted program can crash the runtime with SIGSEGV, so this never runs inside the CLI's or the
orchestrator's own process. Same arguments and JSON as the native runner."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from kit.runners import tensorfile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pybind_child")
    ap.add_argument("--model", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--etdump")
    ap.add_argument("--outputs")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)

    import torch
    from executorch.extension.pybindings import portable_lib  # noqa: F401  (registers kernels)
    from executorch.extension.pybindings.portable_lib import _load_for_executorch, _unsafe_reset_threadpool

    inputs = tuple(torch.from_numpy(x) for x in tensorfile.load(a.inputs))
    if a.threads > 0:
        _unsafe_reset_threadpool(a.threads)
    t0 = time.perf_counter()
    module = _load_for_executorch(a.model, enable_etdump=bool(a.etdump), debug_buffer_size=0)
    load_ms = (time.perf_counter() - t0) * 1e3
    warm, lat, out = [], [], None
    for i in range(a.warmup + a.iterations):
        t = time.perf_counter()
        out = module.forward(inputs)
        (warm if i < a.warmup else lat).append((time.perf_counter() - t) * 1e3)
    arrays = [o.detach().numpy() for o in out if isinstance(o, torch.Tensor)]
    if a.outputs:
        tensorfile.save(a.outputs, arrays)
    if a.etdump:
        module.write_etdump_result_to_file(a.etdump)
    result = {
        "runner": "pybind",
        "load_ms": load_ms,
        "first_inference_ms": (warm or lat)[0],
        "warmup_ms": warm,
        "latencies_ms": lat,
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "threads": a.threads,
        "checksum": tensorfile.checksum(arrays),
        "etdump": a.etdump,
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
