"""One profiling session: export and build if needed, a timing-only run, an ETDump run, ingestion
and analysis, written atomically as `runs/<run_id>/`. Warmups are excluded from all statistics.

Runs on the local CPU (host and emulated targets) hold one lock so they never overlap; each remote
device has its own lock."""

from __future__ import annotations

import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kit.core import atomic, limits
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.devices import inventory
from kit.export import exporter
from kit.models import registry
from kit.profile.runrecord import RUN_FILE, RunRecord, new_run_id, now, read_timing
from kit.runners import invoke, recipes
from kit.stats import categories
from kit.stats import summary as analysis_mod
from kit.trace import etdump
from kit.trace.program import ProgramMap


@dataclass
class ProfileResult:
    run_dir: Path
    record: RunRecord
    analysis: analysis_mod.Analysis
    trace: etdump.Trace | None = None


def run_session(
    root: DataRoot,
    exp: exporter.Export,
    resolved,
    threads: int,
    iterations: int,
    warmup: int,
    runner_kind: str = "native",
    binary=None,
    timeout_s: float = 900.0,
    progress=None,
    rules_file: Path | None = None,
    conditions: dict | None = None,
) -> ProfileResult:
    """Timing run + ETDump run of one export on one resolved target; returns the written run.
    `rules_file`: operator category rules (default: the data root's categories.toml when present);
    `conditions`: extra entries for run.json's conditions (e.g. the pair session)."""
    say = progress or (lambda msg: None)
    target = resolved.target
    meta = exp.meta
    run_id = new_run_id(exp.variant.key, target.key, meta["size"], threads)
    record = RunRecord(
        run_id=run_id,
        model=meta["model"],
        dtype=meta["dtype"],
        backend=meta["backend"],
        size=meta["size"],
        target=target.key,
        device=target.device,
        sme2=target.sme2,
        threads=threads,
        runner=runner_kind,
        iterations=iterations,
        warmup=warmup,
        emulated=resolved.transport.emulated,
        platform=resolved.device.platform,
        transport=resolved.device.transport,
        runner_sha256=binary.sha256 if binary else "",
        runner_recipe=binary.manifest.get("recipe", "") if binary else "pybind",
        pte_sha256=meta["pte_sha256"],
        versions=meta["versions"],
        stem=f"{exp.variant.stem}_{target.key.replace('.', '_')}_t{threads}",
    )
    folder = root.runs / run_id
    env = resolved.env_for(threads)
    with atomic.staged_dir(folder) as stage:
        record.started_at = now()
        record.conditions = {
            **resolved.conditions(),
            "threads": threads,
            "affinity": resolved.affinity_for(threads),
            "sme2_flag": target.sme2,
            **(conditions or {}),
        }
        cpus = record.conditions["affinity"]
        request = dict(
            pte=exp.pte,
            inputs=exp.inputs,
            iterations=iterations,
            warmup=warmup,
            threads=threads,
            timeout_s=timeout_s,
            expected_sha256=meta["pte_sha256"],
            env=env,
            cpus=cpus,
            failure_logs=root.logs,  # the staging folder holding the logs is removed on failure
        )
        with resolved.measurement_lock(root), resolved.transport.measurement():
            window_start = time.time()
            say(f"{target.key}: timing run, {warmup}+{iterations} iterations, {threads} thread(s)")
            timing = invoke.run_program(
                runner_kind,
                invoke.RunRequest(**request, etdump=False),
                stage,
                resolved.transport,
                binary,
                label=f"{runner_kind} runner (timing)",
            )
            say(f"{target.key}: ETDump run")
            traced = invoke.run_program(
                runner_kind,
                invoke.RunRequest(**request, etdump=True),
                stage,
                resolved.transport,
                binary,
                label=f"{runner_kind} runner (ETDump)",
            )
            record.conditions["measurement_window"] = [window_start, time.time()]
        record.finished_at = now()
        for name in ("program_map.json", exporter.META):
            shutil.copy2(exp.folder / name, stage / name)
        say(f"{target.key}: ingesting the ETDump")
        tr = etdump.ingest(traced.etdump, exp.program_map, warmup=warmup)
        rules = categories.load_rules(rules_file or root.user_categories)
        result = analysis_mod.analyze(tr, timing.result["latencies_ms"], rules)
        analysis_mod.write(result, stage, record.stem, name=f"{exp.variant.key} on {target.key}, {threads} thread(s)")
        t = timing.result
        record.results = {
            "load_ms": t["load_ms"],
            "first_inference_ms": t["first_inference_ms"],
            "peak_rss_kb": t["peak_rss_kb"],
            "checksum": t["checksum"],
            "etdump_checksum": traced.result["checksum"],
            "e2e_median_ms": result.e2e["median_ms"],
            "e2e_cv_percent": result.e2e["cv_percent"],
            "execute_median_ms": result.execute["median_ms"],
            "coverage": result.coverage,
            "execute_breakdown": result.execute_breakdown,
            "init_ms": tr.init_ms,
        }
        atomic.write_json(stage / RUN_FILE, record.to_json())
    return ProfileResult(folder, record, result, tr)


def load_run(folder: Path, rules=None) -> ProfileResult:
    """Re-analyse a run folder from its files (ETDump + program map + timing JSON)."""
    folder = Path(folder)
    if not (folder / RUN_FILE).exists():
        raise Sme2Error(f"{folder} is not a run folder (no {RUN_FILE})", "pass a folder under $SME2_HOME/runs/")
    record = RunRecord.load(folder)
    pmap = ProgramMap.load(folder) if (folder / "program_map.json").exists() else None
    tr = etdump.ingest(folder / "etdump.etdp", pmap, warmup=record.warmup)
    timing = read_timing(folder)  # validated: the numbers feed statistics and the warehouse
    result = analysis_mod.analyze(tr, timing["latencies_ms"], rules or categories.load_rules())
    return ProfileResult(folder, record, result, tr)


@dataclass
class ProfilePlan:
    """What `sme2 profile` does: variants x targets x thread counts at one size."""

    model: str
    dtypes: list[str]
    targets: list[str]
    size: str | None = None  # None: each device's default (full on hardware, small emulated)
    threads: list[int] | None = None  # None: each device's list
    iterations: int = 20
    warmup: int = 3
    runner: str = "native"
    backend: str = "xnnpack"
    checkpoint: str | None = None
    timeout_s: float = 900.0
    models_dir: str | None = None
    rules_file: Path | None = None  # None: the data root's categories.toml when present

    def __post_init__(self):
        # Refused before any export or build starts, not at the first run.
        limits.check_iterations(self.iterations, "iterations")
        limits.check_iterations(self.warmup, "warmup", minimum=0)
        limits.check_timeout(self.timeout_s, "timeout")
        for t in self.threads or ():
            limits.check_threads(t, "threads")


def pair_sessions(resolved: list) -> dict[str, str]:
    """{device: pair session id} for each device whose SME2 on and off targets are both in a plan:
    their runs are measured interleaved and record the id (conditions.pair_session)."""
    by_device: dict[str, set[bool]] = {}
    for r in resolved:
        by_device.setdefault(r.device.name, set()).add(r.target.sme2)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {d: f"{stamp}-{d}-{secrets.token_hex(3)}" for d, flags in by_device.items() if flags == {True, False}}


def execute(plan: ProfilePlan, root: DataRoot, progress=None, on_result=None) -> list[ProfileResult]:
    """Run a plan. Emulated targets cap iterations at the device's maximum. SME2 on/off pairs of
    one device are interleaved in blocks (on, off, on, off) so drift hits both alike; their runs share
    a pair session id (conditions.pair_session) and record their block (conditions.pair_block).

    `on_result(result)` is called as each run folder is committed (the caller stores it: this stage
    sits below the warehouse)."""
    say = progress or (lambda msg: None)
    pkg = registry.get(plan.model, plan.models_dir)
    reg = inventory.load_registry(root)
    resolved = [inventory.resolve(t, root, reg) for t in plan.targets]
    results: list[ProfileResult] = []
    for dtype in plan.dtypes:
        pkg.spec.check_dtype(dtype)
    pairs = pair_sessions(resolved)
    for i, block in enumerate(inventory.interleave(resolved, plan.threads)):
        r, threads = block
        paired = {"pair_session": pairs[r.device.name], "pair_block": i} if r.device.name in pairs else {}
        size = plan.size or r.device.size
        iterations = min(plan.iterations, r.device.max_iterations) if r.device.max_iterations else plan.iterations
        binary = recipes.runner_for(r, root, plan.runner, say)
        for dtype in plan.dtypes:
            exp = exporter.export_variant(
                pkg, dtype, size, root, backend=plan.backend, checkpoint=plan.checkpoint, progress=say
            )
            result = run_session(
                root,
                exp,
                r,
                threads,
                iterations,
                plan.warmup,
                plan.runner,
                binary,
                plan.timeout_s,
                say,
                rules_file=plan.rules_file,
                conditions=paired,
            )
            if on_result is not None:
                on_result(result)
            results.append(result)
            inventory.cool_down(r.device, say)
    return results
