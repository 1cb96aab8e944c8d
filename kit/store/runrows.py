"""A run folder as the rows the warehouse keeps about it (`RunRows`: one DataFrame per table),
from the folder's files alone: run.json, timing, the ETDump trace labelled with categories and
modules, kernels, artifacts and a counted run's count table. No connection and no SQL: the files
are the source of truth, and a rebuild reads every folder with this module alone; writing the rows
is kit.store.runwriter's job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kit.core.atomic import sha256_file
from kit.core.errors import RunFolderError
from kit.core.jsonfile import read_json
from kit.counts import table as count_table
from kit.profile import session
from kit.profile.runrecord import read_timing
from kit.stats import categories
from kit.trace import kernels, modules
from kit.trace.program import ProgramMap


@dataclass
class RunRows:
    run: dict
    samples: pd.DataFrame
    events: pd.DataFrame
    op_stats: pd.DataFrame
    category_stats: pd.DataFrame
    kernels: pd.DataFrame
    artifacts: pd.DataFrame
    counts: pd.DataFrame | None = None  # op_event_counts: a counted (emulated) run's count table

    def tables(self):
        yield "runs", pd.DataFrame([self.run])
        yield "latency_samples", self.samples
        yield "op_events", self.events
        yield "op_stats", self.op_stats
        yield "category_stats", self.category_stats
        yield "kernels", self.kernels
        yield "artifacts", self.artifacts
        yield "op_event_counts", self.counts if self.counts is not None else pd.DataFrame()

    def relocated(self, staged: Path, final: Path) -> "RunRows":
        """The same rows for a folder read while staged and committed later: paths name `final`."""
        staged, final = str(Path(staged)), str(Path(final))

        def moved(path):
            return final + path[len(staged) :] if isinstance(path, str) and path.startswith(staged) else path

        run = {**self.run, "run_dir": moved(self.run.get("run_dir"))}
        artifacts = self.artifacts.copy()
        if "path" in artifacts:
            artifacts["path"] = artifacts["path"].map(moved)
        return RunRows(
            run, self.samples, self.events, self.op_stats, self.category_stats, self.kernels, artifacts, self.counts
        )


def rows_from_run(run_dir: Path, rules=None) -> RunRows:
    """Everything the warehouse keeps about a run folder, from its files alone."""

    result = session.load_run(run_dir, rules or categories.load_rules())
    rec, a = result.record, result.analysis
    run_id = rec.run_id
    tr_rows = result.trace.rows if hasattr(result, "trace") and result.trace is not None else None
    timing = read_timing(run_dir)  # validated like run.json: a crafted file raises, never half-ingests
    etdump_json = (
        read_json(Path(run_dir) / "etdump.json", f"the run in {run_dir}")
        if (Path(run_dir) / "etdump.json").exists()
        else {}
    )
    if not isinstance(etdump_json, dict):
        raise RunFolderError(f"{Path(run_dir) / 'etdump.json'} is not a JSON object", "re-run the profile")
    samples = pd.concat(
        [
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "kind": "timing",
                    "iteration": range(len(timing["latencies_ms"])),
                    "latency_ms": timing["latencies_ms"],
                }
            ),
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "kind": "execute",
                    "iteration": range(len(a.per_iteration)),
                    "latency_ms": a.per_iteration["execute_ms"].to_numpy(),
                }
            ),
        ],
        ignore_index=True,
    )
    pmap = ProgramMap.load(run_dir) if (Path(run_dir) / "program_map.json").is_file() else None
    if tr_rows is not None:
        operators = tr_rows.assign(module=modules.event_modules(tr_rows, pmap))
        operators = operators[operators.row_kind == "operator"]
        events = categories.label(operators, rules or categories.load_rules())
    else:
        events = pd.DataFrame()
    events = events.assign(run_id=run_id)[
        [
            "run_id",
            "iteration",
            "seq",
            "op_type",
            "event_name",
            "delegated",
            "backend",
            "instruction_id",
            "category",
            "fine_category",
            "kernel_hint",
            "start_us",
            "duration_ms",
            "module",
        ]
    ]
    op_stats = a.op_stats.assign(run_id=run_id)
    cat = a.category_stats.assign(run_id=run_id)
    # A kernel-log runner's stderr (kept in the run's logs) names the microkernel of each operator.
    logs = [
        (Path(run_dir) / n).read_text(errors="replace")
        for n in ("timing.log", "etdump.log")
        if (Path(run_dir) / n).is_file()
    ]
    kern = kernels.kernel_table(a.op_stats, kernels.kernel_log_of(logs) or None).assign(run_id=run_id)
    arts = []
    for kind, name in (
        ("etdump", "etdump.etdp"),
        ("timing", "timing.json"),
        ("robust_stats", f"{rec.stem}_robust_stats.json"),
        ("ops_stats", f"{rec.stem}_exec_ops_stats.csv"),
    ):
        p = Path(run_dir) / name
        if p.exists():
            arts.append(
                {"run_id": run_id, "kind": kind, "path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
            )
    e2e = a.e2e
    run = {
        "run_id": run_id,
        "run_key": rec.run_key,
        "variant": rec.variant,
        "model": rec.model,
        "dtype": rec.dtype,
        "backend": rec.backend,
        "size": rec.size,
        "target": rec.target,
        "device": rec.device,
        "sme2": rec.sme2,
        "emulated": rec.emulated,
        "threads": rec.threads,
        "runner": rec.runner,
        "iterations": rec.iterations,
        "warmup": rec.warmup,
        "platform": rec.platform,
        "transport": rec.transport,
        "runner_sha256": rec.runner_sha256,
        "runner_recipe": rec.runner_recipe,
        "pte_sha256": rec.pte_sha256,
        "started_at": _utc(rec.started_at, run_dir),
        "finished_at": _utc(rec.finished_at, run_dir) if rec.finished_at else None,
        "ingested_at": _utc(None),
        "torch_version": rec.versions.get("torch"),
        "executorch_version": rec.versions.get("executorch"),
        "cpu_model": rec.conditions.get("cpu_model"),
        "e2e_median_ms": e2e.get("median_ms"),
        "e2e_p10_ms": e2e.get("percentiles", {}).get("p10"),
        "e2e_p90_ms": e2e.get("percentiles", {}).get("p90"),
        "e2e_cv_percent": e2e.get("cv_percent"),
        "e2e_ci_low_ms": e2e.get("median_ci95_ms", [None, None])[0],
        "e2e_ci_high_ms": e2e.get("median_ci95_ms", [None, None])[1],
        "execute_median_ms": a.execute.get("median_ms"),
        "coverage": a.coverage,
        "load_ms": rec.results.get("load_ms"),
        "first_inference_ms": rec.results.get("first_inference_ms"),
        "peak_rss_kb": rec.results.get("peak_rss_kb"),
        "n_samples": len(samples),
        "n_op_events": len(events),
        "n_op_stats": len(op_stats),
        "source": rec.source,
        "run_dir": str(run_dir),
        "conditions": json.dumps(rec.conditions, default=str),
        "results": json.dumps(
            {**rec.results, "etdump_run": {k: etdump_json.get(k) for k in ("load_ms", "first_inference_ms")}},
            default=str,
        ),
    }
    counted = count_table.read(run_dir)
    if counted is not None:
        counted = counted.assign(run_id=run_id, cost_model=(rec.results.get("counts") or {}).get("cost_model"))
    return RunRows(run, samples, events, op_stats, cat, kern, pd.DataFrame(arts), counted)


def _utc(text: str | None, run_dir: Path | None = None) -> pd.Timestamp:
    """A naive UTC timestamp (DuckDB TIMESTAMP) from an ISO string; now when None."""
    try:
        ts = pd.Timestamp(text) if text else pd.Timestamp.now(tz="UTC")
    except (ValueError, TypeError, OverflowError) as e:
        raise RunFolderError(
            f"{Path(run_dir or '.') / 'run.json'}: timestamp {text!r} is not a date ({e})",
            "use an ISO 8601 time such as 2026-01-31T12:00:00Z",
        ) from e
    if ts is pd.NaT:
        raise RunFolderError(f"{Path(run_dir or '.') / 'run.json'}: timestamp {text!r} is not a date", "use ISO 8601")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts
