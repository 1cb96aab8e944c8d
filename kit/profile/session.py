"""One profiling session: export and build if needed, a timing-only run, an ETDump run, ingestion
and analysis, written atomically as `runs/<run_id>/`. Warmups are excluded from all statistics.

Runs on the local CPU (host and emulated targets) hold one lock so they never overlap; each remote
device has its own lock."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.core import atomic, limits
from kit.core.errors import LabelError, Sme2Error
from kit.core.home import DataRoot
from kit.core.settings import Measure
from kit.counts import costmodel, qemu_build
from kit.counts import table as count_table
from kit.devices import inventory
from kit.export import artifact, exporter, importer
from kit.models import registry
from kit.profile import armkit
from kit.profile.runrecord import RUN_FILE, RunRecord, new_run_id, now, read_timing
from kit.runners import invoke, pathrunner, recipes
from kit.runners.build import RunnerBinary
from kit.stats import categories
from kit.stats import summary as analysis_mod
from kit.trace import etdump, kernels, simpleperf
from kit.trace.program import ProgramMap


@dataclass
class ProfileResult:
    run_dir: Path
    record: RunRecord
    analysis: analysis_mod.Analysis
    trace: etdump.Trace | None = None


@dataclass(frozen=True)
class Measurement:
    """How one session measures: thread count, warmup + measured iterations, which runner (a kind
    and, for native and path runners, its binary from kit.runners), the hang timeout, and the extra
    runs (a counting run for instruction counts, a simpleperf run on a phone).

    With runner_kind "path" (`binary` from kit.runners.pathrunner: an executor_runner-compatible
    binary) the session is one traced process of warmup + iterations executions, driven with
    executor_runner's flags plus `extra_args`. `cpus` pins the runs to a CPU list instead of the
    device's affinity."""

    threads: int
    iterations: int
    warmup: int
    runner_kind: str = "native"
    binary: RunnerBinary | None = None
    timeout_s: float = limits.RUN_TIMEOUT_S
    extra_args: tuple[str, ...] = ()
    cpus: str | None = None
    counts: bool = False
    simpleperf: bool = False

    @property
    def path_runner(self) -> bool:
        return self.runner_kind == pathrunner.RECIPE

    @property
    def kernel_log(self) -> bool:
        """A kernel-log runner's timings carry XNNPACK's logging: its runs are their own run key."""
        return bool(self.binary and self.binary.manifest.get("kernel_log"))


def run_session(
    root: DataRoot,
    exp: artifact.Export,
    resolved,
    how: Measurement,
    progress=None,
    *,
    rules_file: Path | None = None,
    conditions: dict | None = None,
    target=None,
) -> ProfileResult:
    """Timing run + ETDump run of one export on one resolved target, measured as `how` says;
    returns the written run. `rules_file`: operator category rules (default: the data root's
    categories.toml when present); `conditions`: extra entries for run.json's conditions (e.g. the
    pair session); `target` records the run under another target than the resolved one (a path
    runner's SME2 flag is the binary's, see kit.profile.experiments).

    A path runner's iteration times are the binary's own when it prints them (SME2_RUNNER_JSON),
    else Method::execute from the ETDump."""
    say = progress or (lambda msg: None)
    target = target or resolved.target
    record = new_record(exp, resolved, target, how)
    folder = root.run_path(record.run_id)
    env = resolved.env_for(how.threads)
    with atomic.staged_dir(folder) as stage:
        record.started_at = now()
        record.conditions = run_conditions(resolved, target, how, conditions)
        request = dict(
            pte=exp.pte,
            inputs=exp.inputs,
            iterations=how.iterations,
            warmup=how.warmup,
            threads=how.threads,
            timeout_s=how.timeout_s,
            expected_sha256=exp.meta["pte_sha256"],
            env=env,
            cpus=record.conditions["affinity"],
            failure_logs=root.logs,  # the staging folder holding the logs is removed on failure
        )
        with resolved.measurement_lock(root), resolved.transport.measurement():
            window_start = time.time()
            timing, traced = measure(resolved, request, how, stage, target, say)
            record.conditions["measurement_window"] = [window_start, time.time()]
            if how.counts:
                counted = counting_run(root, resolved, request, how, stage, target, say)
            if how.simpleperf:
                sampled = simpleperf_run(exp, resolved, request, how, stage, target, say)
        record.finished_at = now()
        for name in ("program_map.json", artifact.META):
            shutil.copy2(exp.folder / name, stage / name)
        say(f"{target.key}: ingesting the ETDump")
        tr = etdump.ingest(traced.etdump, exp.program_map, warmup=how.warmup)
        if how.path_runner:
            timing = _path_timing(traced, tr, how.warmup, stage)
            record.conditions["timing_source"] = timing.result["timing_source"]
        problem = kernels.label_problem(tr.operators.op_type.unique(), target.sme2, exp.meta["dtype"])
        if problem:
            refuse(root, stage, record, problem)
        rules = categories.load_rules(rules_file or root.user_categories)
        result = analysis_mod.analyze(tr, timing.result["latencies_ms"], rules)
        extra = {}
        if how.counts:
            extra["counts"] = write_count_table(root, exp, stage, counted, rules)
        if how.simpleperf:
            extra["simpleperf"] = sampled
        write_run(stage, folder, exp, record, result, tr, rules, timing, traced, extra)
    return ProfileResult(folder, record, result, tr)


def new_record(exp: artifact.Export, resolved, target, how: Measurement) -> RunRecord:
    """The run's record before it runs: what ran (the export, the runner) where (target, device)."""
    meta = exp.meta
    binary = how.binary
    return RunRecord(
        run_id=new_run_id(exp.variant.key, target.key, meta["size"], how.threads),
        model=meta["model"],
        dtype=meta["dtype"],
        backend=meta["backend"],
        size=meta["size"],
        target=target.key,
        device=target.device,
        sme2=target.sme2,
        threads=how.threads,
        runner=f"{how.runner_kind}-xnnlog" if how.kernel_log else how.runner_kind,
        iterations=how.iterations,
        warmup=how.warmup,
        emulated=resolved.transport.emulated,
        platform=resolved.device.platform,
        transport=resolved.device.transport,
        runner_sha256=binary.sha256 if binary else "",
        runner_recipe=binary.manifest.get("recipe", "") if binary else "pybind",
        pte_sha256=meta["pte_sha256"],
        versions=meta["versions"],
        stem=f"{exp.variant.stem}_{target.key.replace('.', '_')}_t{how.threads}",
        package_id=(meta.get("package") or {}).get("source_id", ""),
    )


def run_conditions(resolved, target, how: Measurement, extra: dict | None) -> dict:
    """run.json's conditions as the runs start: the device's, the threads and their CPU affinity,
    the SME2 flag, the runner's flags (a path runner: its binary and extra arguments), plus `extra`."""
    binary = how.binary
    out = {
        **resolved.conditions(),
        "threads": how.threads,
        "affinity": how.cpus if how.cpus is not None else resolved.affinity_for(how.threads),
        "sme2_flag": target.sme2,
        "kernel_log": how.kernel_log,
        **({"runner_flags": binary.manifest.get("flags", [])} if binary else {}),
        **(extra or {}),
    }
    if how.path_runner:
        out["recipe"] = pathrunner.RECIPE  # not the device's recipe: the user's binary
        out["runner_path"] = str(binary.path)
        out["extra_args"] = list(how.extra_args)
    return out


def measure(
    resolved, request: dict, how: Measurement, stage: Path, target, say
) -> tuple[invoke.RunOutcome | None, invoke.RunOutcome]:
    """The measured runs, under the caller's measurement lock: (timing run, ETDump run). A path
    runner has one traced run and no timing run (None: its timings come from the traced run)."""
    threads, warmup, iterations, binary = how.threads, how.warmup, how.iterations, how.binary
    if how.path_runner:
        say(f"{target.key}: {binary.path.name}, {warmup}+{iterations} executions traced, {threads} thread(s)")
        traced = invoke.run_executor_runner(
            invoke.RunRequest(**request, etdump=True),
            stage,
            resolved.transport,
            binary,
            tuple(how.extra_args),
            label=f"runner {binary.path} (ETDump)",
            stem="etdump",
        )
        return None, traced
    say(f"{target.key}: timing run, {warmup}+{iterations} iterations, {threads} thread(s)")
    timing = invoke.run_program(
        how.runner_kind,
        invoke.RunRequest(**request, etdump=False),
        stage,
        resolved.transport,
        binary,
        label=f"{how.runner_kind} runner (timing)",
    )
    say(f"{target.key}: ETDump run")
    traced = invoke.run_program(
        how.runner_kind,
        invoke.RunRequest(**request, etdump=True),
        stage,
        resolved.transport,
        binary,
        label=f"{how.runner_kind} runner (ETDump)",
    )
    return timing, traced


def write_count_table(root: DataRoot, exp: artifact.Export, stage: Path, counted: invoke.RunOutcome, rules) -> dict:
    """The counting run's per-operator table in `<run>/counting/`; returns its summary for run.json."""
    table = count_table.build(
        etdump.ingest(counted.etdump, exp.program_map, warmup=count_table.WARMUP),
        stage / count_table.FOLDER / count_table.PLUGIN_FILE,
        rules,
        costmodel.load(root.user_cost_model if root.user_cost_model.is_file() else None),
    )
    count_table.write(stage, table)
    return table.summary


def write_run(
    stage: Path,
    folder: Path,
    exp: artifact.Export,
    record: RunRecord,
    result: analysis_mod.Analysis,
    tr: etdump.Trace,
    rules,
    timing: invoke.RunOutcome,
    traced: invoke.RunOutcome,
    extra: dict,
) -> None:
    """The run's files in the staging folder: the analysis, Arm's kit files and run.json, whose
    results get the timing numbers, the statistics and `extra` (counts, simpleperf summaries)."""
    # Evidence for the SME2 flag: operator types whose kernels only an SME2 CPU picks (PF32, PQS8).
    record.conditions["sme2_kernels_seen"] = int(
        sum(kernels.family(op) == "kleidiai-sme2" for op in result.op_stats.op_type)
    )
    analysis_mod.write(
        result, stage, record.stem, name=f"{exp.variant.key} on {record.target}, {record.threads} thread(s)"
    )
    t = timing.result
    record.results = {
        "load_ms": t["load_ms"],
        "first_inference_ms": t["first_inference_ms"],
        "peak_rss_kb": t["peak_rss_kb"],
        "checksum": t["checksum"],
        "etdump_checksum": traced.result.get("checksum"),
        "e2e_median_ms": result.e2e["median_ms"],
        "e2e_cv_percent": result.e2e["cv_percent"],
        "execute_median_ms": result.execute["median_ms"],
        "coverage": result.coverage,
        "execute_breakdown": result.execute_breakdown,
        "init_ms": tr.init_ms,
        **extra,
    }
    # Arm's kit files, from the rows the warehouse will hold (numbers equal by construction).
    armkit.write_run_files(
        stage, record, result, tr, rules, location=folder, model_path=exp.pte, etrecord_path=exp.etrecord
    )
    atomic.write_json(stage / RUN_FILE, record.to_json())


REFUSED_FILE = "refused.json"


def counting_run(root: DataRoot, resolved, request: dict, how: Measurement, stage: Path, target, say):
    """The counting run: WARMUP + ITERATIONS executions traced under the counting QEMU, its files in
    `<run>/counting/`. Counts are per thread: only a 1-thread run is counted."""
    tools = qemu_build.load_counting(root)
    if tools is None:
        raise Sme2Error(
            f"{target.key}: instruction counts need the plugin-capable QEMU, which is not set up",
            "run: sme2 setup --counts (builds it once, about 4 minutes on 2 cores), or profile without --counts",
        )
    if not hasattr(resolved.transport, "counting"):
        raise Sme2Error(
            f"{target.key}: instruction counts come from the emulated CPU; device {resolved.device.name!r} is not emulated",
            "use --counts with an emulated target (armv9-qemu.sme2-on, armv9-qemu.sme2-off)",
        )
    folder = stage / count_table.FOLDER
    folder.mkdir()
    transport = resolved.transport.counting(tools, folder / count_table.PLUGIN_FILE)
    say(f"{target.key}: counting run (instructions per operator on the emulated CPU)")
    req = {**request, "warmup": count_table.WARMUP, "iterations": count_table.ITERATIONS, "threads": 1}
    return invoke.run_program(
        how.runner_kind, invoke.RunRequest(**req, etdump=True), folder, transport, how.binary, label="counting run"
    )


def check_simpleperf(resolved: list) -> None:
    """--simpleperf needs the phone's simpleperf: refused before any run for other transports."""
    for r in resolved:
        if not hasattr(r.transport, "simpleperf"):
            raise Sme2Error(
                f"{r.target.key}: --simpleperf records with an Android phone's own simpleperf; device "
                f"{r.device.name!r} is reached over {r.device.transport}",
                "use --simpleperf with adb targets only (on a Linux host, `perf record` around `sme2 profile` does "
                "the same)",
            )


def simpleperf_run(exp, resolved, request: dict, how: Measurement, stage: Path, target, say) -> dict:
    """One more timed run, recorded by the phone's simpleperf; its profile and the views made from
    it (folded stacks, flame graph, Perfetto stack chart) in `<run>/simpleperf/`. Returns their summary."""
    check_simpleperf([resolved])
    folder = stage / simpleperf.FOLDER
    say(f"{target.key}: simpleperf run (sampled call stacks on the phone)")
    with resolved.transport.simpleperf(folder) as transport:
        invoke.run_program(
            how.runner_kind,
            invoke.RunRequest(**request, etdump=False),
            folder,
            transport,
            how.binary,
            label="simpleperf run",
        )
    summary = simpleperf.write_views(folder, f"{exp.variant.key} on {target.key}: simpleperf samples")
    atomic.write_json(folder / "summary.json", summary)
    return summary


def refuse(root: DataRoot, stage: Path, record: RunRecord, reason: str) -> None:
    """Move a measured run whose trace contradicts its label to refused/<run_id>/ (one rename, from
    the staging folder: it is never under runs/, which recovery ingests) and raise LabelError."""
    record.finished_at = record.finished_at or now()
    atomic.write_json(stage / RUN_FILE, record.to_json())
    atomic.write_json(
        stage / REFUSED_FILE,
        {"run_id": record.run_id, "target": record.target, "dtype": record.dtype, "reason": reason, "at": now()},
    )
    kept = root.refused / record.run_id
    os.replace(stage, kept)
    device = record.device
    raise LabelError(
        f"run {record.run_id} refused as {record.target}: {reason}; nothing was stored, the run folder is kept "
        f"in {kept}",
        (
            f"device {device!r} ran SME2 kernels although its target says sme2-off: build an SME2-off runner "
            "(sme2 source fetch, then the source recipe; see docs/targets.md)"
            if not record.sme2
            else f"device {device!r} did not run SME2 kernels: check that it has SME2 (sme2 devices) and that its "
            "runner was built with XNNPACK_ENABLE_ARM_SME2=ON"
        ),
    )


def _path_timing(traced: invoke.RunOutcome, tr: etdump.Trace, warmup: int, stage: Path) -> invoke.RunOutcome:
    """timing.json of a path-runner run: the binary's per-iteration times when it printed them,
    else Method::execute per iteration from its ETDump (what Arm's kit reports); warmups dropped."""
    printed = traced.result.get("latencies_ms")
    if isinstance(printed, list) and len(printed) == warmup + tr.iterations:
        latencies, warm = printed[warmup:], printed[:warmup]
        source = "runner (per-execution wall clock, traced process)"
    else:
        latencies, warm = [float(x) for x in tr.method_ms], tr.warmup_method_ms
        source = "etdump Method::execute"
    first = warm[0] if warm else latencies[0]
    load = traced.result.get("load_ms", tr.init_ms.get("Program::load_method", tr.init_ms.get("Method::init")))
    timing = {
        "runner": pathrunner.RECIPE,
        "timing_source": source,
        "load_ms": load,
        "first_inference_ms": first,
        "warmup_ms": list(warm),
        "latencies_ms": list(latencies),
        "peak_rss_kb": traced.result.get("peak_rss_kb"),
        "checksum": traced.result.get("checksum"),
        "reported_total_ms": traced.result.get("reported_total_ms"),
        "argv": traced.argv,
    }
    atomic.write_json(stage / "timing.json", timing)
    atomic.write_json(stage / "etdump.json", traced.result)
    return invoke.RunOutcome(timing, None, None, traced.log, traced.argv, traced.seconds)


def kernel_log_run(
    exp: artifact.Export,
    resolved,
    out_dir: Path,
    stem: str,
    threads: int = 1,
    runner_kind: str = "native",
    binary=None,
    extra_args: tuple[str, ...] = (),
    timeout_s: float = limits.RUN_TIMEOUT_S,
    cpus: str | None = None,
) -> dict:
    """Arm's `xnntrace` mode: one execution with XNNPACK's log at level 5, kept as
    `<stem>_xnntrace.log`, and the microkernels it names as `<stem>_xnntrace_kernels.csv`. Only a
    kernel-log runner build (-UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5; Arm's "xnnlog" presets, our
    source recipe's kernel_log) prints them: with any other the table is empty and `note` says so."""
    out_dir = Path(out_dir)
    env = {**resolved.env_for(threads), "XNN_LOG_LEVEL": "5"}
    req = invoke.RunRequest(
        pte=exp.pte,
        inputs=exp.inputs,
        iterations=1,
        warmup=0,
        threads=threads,
        timeout_s=timeout_s,
        expected_sha256=exp.meta["pte_sha256"],
        env=env,
        cpus=cpus,
    )
    with tempfile.TemporaryDirectory(prefix="sme2-xnntrace-") as tmp:
        if runner_kind == pathrunner.RECIPE:
            outcome = invoke.run_executor_runner(
                req, Path(tmp), resolved.transport, binary, tuple(extra_args), label="kernel-log run", stem="xnntrace"
            )
        else:
            outcome = invoke.run_program(
                runner_kind, req, Path(tmp), resolved.transport, binary, label="kernel-log run"
            )
        text = outcome.log.read_text(errors="replace")
    log = atomic.write_text(out_dir / f"{stem}_xnntrace.log", text)
    table = kernels.parse_kernel_log(text)
    csv = atomic.write_text(out_dir / f"{stem}_xnntrace_kernels.csv", table.to_csv(index=False))
    note = (
        f"{len(table)} microkernels"
        if len(table)
        else "no 'Using ... microkernel' lines: this runner's XNNPACK was built without logging; use a kernel-log "
        "build (Arm's xnnlog presets, or -UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5)"
    )
    return {"log": log, "kernels_csv": csv, "kernels": table, "note": note}


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


def write_armkit_files(root: DataRoot, folder: Path, rules=None) -> dict[str, Path]:
    """(Re)write Arm's kit files of an existing run folder (runs profiled before they existed, or
    after the category rules changed); the .pte and ETRecord are named when the export still holds
    the program the run executed."""
    rules = rules or categories.load_rules(root.user_categories)
    r = load_run(folder, rules)
    pte, etrecord = armkit.export_files(root, r.record)
    return armkit.write_run_files(
        r.run_dir, r.record, r.analysis, r.trace, rules, model_path=pte, etrecord_path=etrecord
    )


@dataclass
class ProfilePlan:
    """What `sme2 profile` does: variants x targets x thread counts, measured as `measure` says."""

    model: str
    dtypes: list[str]
    targets: list[str]
    measure: Measure = field(default_factory=Measure)  # size, iterations, warmup, threads, runner, timeout
    kernel_log: bool = False  # the kernel-log runner (a source build): microkernel names per operator
    backend: str = "xnnpack"
    checkpoint: str | None = None
    models_dir: str | None = None
    rules_file: Path | None = None  # None: the data root's categories.toml when present
    # A program without a model package (`sme2 profile --pte`): model and dtypes then name it
    # (default: from its file name), size is "pte"; the ETRecord is optional.
    pte: str | None = None
    etrecord: str | None = None
    # Instruction counts (a counting run on emulated targets, 1 thread): True requires them, False
    # skips them, None counts wherever `sme2 setup --counts` has been done.
    counts: bool | None = None
    simpleperf: bool = False  # a sampled profile on Android phones (adb targets)


def wants_counts(requested: bool | None, root: DataRoot, resolved, threads: int, runner: str) -> bool:
    """Whether a run gets a counting run: only emulated targets at 1 thread with the native runner
    can; None means "where set up"; True where they cannot is an error naming why."""
    possible = resolved.transport.emulated and threads == 1 and runner == "native"
    if requested is None:
        return possible and qemu_build.load_counting(root) is not None
    if requested and not possible:
        raise Sme2Error(
            f"{resolved.target.key} at {threads} thread(s) with the {runner} runner cannot be counted: instruction "
            "counts come from the emulated CPU, one thread, the native runner",
            "use --counts with armv9-qemu targets and --threads 1 (other runs are timed as usual without --counts)",
        )
    return bool(requested)


def pair_sessions(resolved: list) -> dict[str, str]:
    """{device: pair session id} for each device whose SME2 on and off targets are both in a plan:
    their runs are measured interleaved and record the id (conditions.pair_session)."""
    by_device: dict[str, set[bool]] = {}
    for r in resolved:
        by_device.setdefault(r.device.name, set()).add(r.target.sme2)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return {d: f"{stamp}-{d}-{secrets.token_hex(3)}" for d, flags in by_device.items() if flags == {True, False}}


def check_kernel_log(plan: ProfilePlan, resolved: list) -> None:
    """The kernel-log runner has SME2 compiled in: its sme2-off side exists only on a CPU without
    SME2 (the emulated pair's -cpu max,sme=off, a board without SME2), never on SME2 hardware."""
    if plan.measure.runner != "native":
        raise Sme2Error("the kernel-log runner is a native runner", "drop --runner pybind, or --kernel-log")
    for r in resolved:
        if not r.target.sme2 and r.recipe == "source":
            raise Sme2Error(
                f"{r.target.key}: the kernel-log runner is built with SME2, and device {r.device.name!r} runs SME2 "
                "whenever the runner has it, so its sme2-off side would run SME2 kernels",
                f"profile the kernel log on {r.device.name}.sme2-on only, or on a CPU without SME2 "
                "(e.g. armv9-qemu.sme2-off)",
            )


def execute(plan: ProfilePlan, root: DataRoot, progress=None, on_result=None) -> list[ProfileResult]:
    """Run a plan. Emulated targets cap iterations at the device's maximum. SME2 on/off pairs of
    one device are interleaved in blocks (on, off, on, off) so drift hits both alike; their runs share
    a pair session id (conditions.pair_session) and record their block (conditions.pair_block).

    `on_result(result)` is called as each run folder is committed (the caller stores it: this stage
    sits below the warehouse)."""
    say = progress or (lambda msg: None)
    imported = None
    if plan.pte:
        imported = importer.import_program(
            Path(plan.pte),
            root,
            etrecord=Path(plan.etrecord) if plan.etrecord else None,
            name=plan.model or None,
            dtype=plan.dtypes[0] if plan.dtypes else None,
            progress=say,
        )
    else:
        pkg = registry.get(plan.model, plan.models_dir)
        for dtype in plan.dtypes:
            pkg.spec.check_dtype(dtype)
    reg = inventory.load_registry(root)
    resolved = [inventory.resolve(t, root, reg) for t in plan.targets]
    results: list[ProfileResult] = []
    if plan.kernel_log:
        check_kernel_log(plan, resolved)
    if plan.simpleperf:
        check_simpleperf(resolved)
    pairs = pair_sessions(resolved)
    m = plan.measure
    for i, block in enumerate(inventory.interleave(resolved, m.threads)):
        r, threads = block
        paired = {"pair_session": pairs[r.device.name], "pair_block": i} if r.device.name in pairs else {}
        binary = recipes.runner_for(r, root, m.runner, say, kernel_log=plan.kernel_log)
        for dtype in [imported.meta["dtype"]] if imported else plan.dtypes:
            exp = imported or exporter.export_variant(
                pkg, dtype, m.size_on(r.device), root, backend=plan.backend, checkpoint=plan.checkpoint, progress=say
            )
            how = Measurement(
                threads,
                m.iterations_on(r.device),
                m.warmup,
                m.runner,
                binary,
                m.timeout_s,
                counts=wants_counts(plan.counts, root, r, threads, m.runner),
                simpleperf=plan.simpleperf,
            )
            result = run_session(root, exp, r, how, say, rules_file=plan.rules_file, conditions=paired)
            if on_result is not None:
                on_result(result)
            results.append(result)
            inventory.cool_down(r.device, say)
    return results
