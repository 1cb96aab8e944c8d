"""Export to the PyTorch benchmark dashboard's v3 JSON records (one metric per record):
{benchmark {name, mode, dtype, extra_info}, model {name, type, backend, origins, extra_info},
metric {name, benchmark_values, target_value, extra_info}, runners [{name, type, cpu_info, ...}]}."""

from __future__ import annotations

import json

from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse

METRICS = (
    ("e2e_median_ms", "median_latency(ms)"),
    ("load_ms", "model_load_time(ms)"),
    ("first_inference_ms", "first_inference_latency(ms)"),
    ("peak_rss_kb", "peak_rss(kb)"),
)


def records(wh: Warehouse, variant: str | None = None) -> list[dict]:
    runs = stored_runs.current_runs(wh, variant)
    out = []
    for r in runs.itertuples():
        cond = json.loads(r.conditions) if r.conditions else {}
        samples = stored_runs.timing_latencies(wh, r.run_id)
        base = {
            "benchmark": {
                "name": "ExecuTorch SME2",
                "mode": "inference",
                "dtype": r.dtype,
                "extra_info": {
                    "run_id": r.run_id,
                    "size": r.size,
                    "threads": int(r.threads),
                    "sme2": bool(r.sme2),
                    "emulated": bool(r.emulated),
                    "runner": r.runner,
                    "executorch": r.executorch_version,
                    "torch": r.torch_version,
                },
            },
            "model": {
                "name": r.model,
                "type": "OSS model",
                "backend": f"{r.backend}{'+sme2' if r.sme2 else ''}",
                "origins": ["sme2-platform"],
                "extra_info": {"variant": r.variant, "pte_sha256": r.pte_sha256},
            },
            "runners": [
                {
                    "name": r.device,
                    "type": r.platform,
                    "cpu_info": r.cpu_model or "",
                    "cpu_count": cond.get("cores"),
                    "extra_info": {"target": r.target, "emulated": bool(r.emulated), "transport": r.transport},
                }
            ],
        }
        for col, metric in METRICS:
            value = getattr(r, col)
            if value is None:
                continue
            extra = {"samples_ms": samples} if col == "e2e_median_ms" else {}
            out.append(
                {
                    **base,
                    "metric": {
                        "name": metric,
                        "benchmark_values": [float(value)],
                        "target_value": None,
                        "extra_info": extra,
                    },
                }
            )
    return out
