"""Running an experiment config (kit.profile.config): its program, then each experiment in file
order, each thread count a profiling session (a run folder) or, in xnntrace mode, a kernel-log run;
then its compare_pairs, and a summary `experiments.json` in the output folder.

The SME2 flag of a run is what the device can do with the runner:
- recipe runners (native, pybind) take the experiment's target, or `<device>.sme2-on|off` as its
  name says, and are checked like any target (an x86 host cannot be `sme2-on`);
- a runner_path binary's flag is its build's (Arm's kit builds SME2 on and SME2 off runners): the
  experiment's target or name claims it; on a device without SME2 it is recorded as `sme2-off`
  whatever the claim (with a note); on the emulated device the flag picks the emulated CPU. Every
  run records the SME2-only kernels (PF32, PQS8) its trace shows, so a claim can be checked."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.core import atomic
from kit.core.errors import RunnerError, Sme2Error, TargetError
from kit.core.home import DataRoot
from kit.core.names import Target
from kit.devices import inventory
from kit.export import artifact, exporter, importer
from kit.models import registry
from kit.profile import runsummary, session
from kit.profile.config import Config, PlannedExperiment
from kit.runners import pathrunner, recipes
from kit.stats import robust

SUMMARY_FILE = "experiments.json"


@dataclass
class ExperimentRun:
    """One experiment at one thread count (and one dtype)."""

    experiment: str
    threads: int
    mode: str
    target: str
    dtype: str
    result: session.ProfileResult | None = None  # timing mode
    kernel_log: dict | None = None  # xnntrace mode
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out = {
            "experiment": self.experiment,
            "threads": self.threads,
            "mode": self.mode,
            "target": self.target,
            "dtype": self.dtype,
            "notes": self.notes,
        }
        if self.result is not None:
            rec, s = self.result.record, runsummary.summarize(self.result, operators=0)
            out.update(
                {
                    "run_id": rec.run_id,
                    "run_dir": str(self.result.run_dir),
                    "runner": rec.runner,
                    "runner_recipe": rec.runner_recipe,
                    "runner_sha256": rec.runner_sha256,
                    "iterations": rec.iterations,
                    "warmup": rec.warmup,
                    "emulated": rec.emulated,
                    "e2e_median_ms": s["e2e_median_ms"],
                    "e2e_cv_percent": s["e2e_cv_percent"],
                    "execute_median_ms": s["execute_median_ms"],
                    "timing_source": rec.conditions.get("timing_source", "timing run"),
                    "sme2_kernels_seen": rec.conditions.get("sme2_kernels_seen"),
                }
            )
        if self.kernel_log is not None:
            out.update(
                {
                    "xnntrace_log": str(self.kernel_log["log"]),
                    "kernels_csv": str(self.kernel_log["kernels_csv"]),
                    "microkernels": len(self.kernel_log["kernels"]),
                    "note": self.kernel_log["note"],
                }
            )
        return out


@dataclass
class ConfigRun:
    config: Config
    runs: list[ExperimentRun]
    comparisons: list[dict]
    summary: Path
    output_dir: Path

    @property
    def results(self) -> list[session.ProfileResult]:
        return [r.result for r in self.runs if r.result is not None]


def _exports(cfg: Config, root: DataRoot, sizes: set[str], say) -> dict[tuple[str, str], artifact.Export]:
    """(dtype, size) -> export: the program imported once, or the package exported per dtype and size."""
    if cfg.pte is not None:
        exp = importer.import_program(
            cfg.pte, root, etrecord=cfg.etrecord, dtype=cfg.dtypes[0] if cfg.dtypes else None, progress=say
        )
        return {(exp.meta["dtype"], size): exp for size in sizes}
    pkg = registry.get(cfg.model, cfg.models_dir)
    dtypes = list(pkg.spec.supported_dtypes) if cfg.dtypes == "all" else (cfg.dtypes or ["fp32"])
    for d in dtypes:
        pkg.spec.check_dtype(d)
    return {
        (d, size): exporter.export_variant(pkg, d, size, root, backend=cfg.backend, progress=say)
        for d in dtypes
        for size in sorted(sizes)
    }


def _resolve(cfg: Config, e: PlannedExperiment, root: DataRoot, reg: dict) -> tuple:
    """(resolved target to run on, target to record, binary, notes) of one experiment."""
    where = f"{cfg.source}: {e.key}"
    device = reg.get(e.device)
    if device is None:
        raise TargetError(
            f"{where}: unknown device {e.device!r}",
            f"known devices: {', '.join(sorted(reg))}; set device (or --device), or add it to {root.user_devices}",
        )
    notes = []
    claimed = e.target.sme2 if e.target is not None else e.flag_from_name
    if e.runner != pathrunner.RECIPE:
        if claimed is None:
            claimed = bool(device.emulated or inventory.make_transport(device, root, True).detect_sme2())
        resolved = inventory.resolve(Target(device.name, claimed).key, root, reg)
        return resolved, resolved.target, recipes.runner_for(resolved, root, e.runner), notes
    if not device.enabled:
        raise TargetError(f"{where}: device {device.name!r} is disabled", f"set enabled = true in {root.user_devices}")
    binary = pathrunner.from_path(e.runner_path, f"{where}.runner_path")
    plat = binary.manifest.get("platform")
    if not pathrunner.runs_on(plat, device.platform):
        raise RunnerError(
            f"{where}.runner_path {binary.path} is a {plat} binary; device {device.name!r} is {device.platform}",
            "point runner_path at a build for that device, or run the experiment on a device of that platform "
            "(an aarch64 Linux runner: target armv9-qemu.sme2-on / sme2-off)",
        )
    if device.emulated:
        flag = True if claimed is None else claimed
        resolved = _resolved(device, root, flag)
    else:
        resolved = _resolved(device, root, True)
        has_sme2 = resolved.transport.detect_sme2()
        if has_sme2:
            flag = True if claimed is None else claimed
            if flag is False:
                notes.append(
                    f"SME2 off is the runner's build ({binary.path.name}), not checked against the hardware; "
                    "see sme2_kernels_seen"
                )
        else:
            flag = False
            if claimed:
                notes.append(
                    f"experiment {e.name!r} asks for SME2 but device {device.name!r} has none: recorded as "
                    f"{Target(device.name, False).key}"
                )
    return resolved, Target(device.name, flag), binary, notes


def _resolved(device, root: DataRoot, sme2: bool) -> inventory.ResolvedTarget:
    """A target on a device without the recipe check (a path runner's SME2 flag is its build's)."""
    transport = inventory.make_transport(device, root, sme2)
    transport.prepare()
    return inventory.ResolvedTarget(Target(device.name, sme2), device, transport)


def run(cfg: Config, root: DataRoot, progress=None, on_result=None, only: list[str] | None = None) -> ConfigRun:
    """Run every experiment of a config (or those named in `only`) and write its summary.
    `on_result(result)` is called as each run folder is committed (the caller stores it)."""
    say = progress or (lambda msg: None)
    experiments = [e for e in cfg.experiments if not only or e.name in only]
    unknown = sorted(set(only or ()) - {e.name for e in cfg.experiments})
    if unknown:
        raise Sme2Error(
            f"{cfg.source}: no experiment named {', '.join(unknown)}",
            f"experiments: {', '.join(e.name for e in cfg.experiments)}",
        )
    reg = inventory.load_registry(root)
    # Resolve every experiment before measuring anything: a bad device or binary fails in seconds.
    plans = [(e, *_resolve(cfg, e, root, reg)) for e in experiments]
    sizes = {cfg.size or r.device.size for _, r, _, _, _ in plans}
    exports = _exports(cfg, root, sizes, say)
    out_dir = cfg.output_dir(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    runs: list[ExperimentRun] = []
    for e, resolved, target, binary, notes in plans:
        size = cfg.size or resolved.device.size
        cap = resolved.device.max_iterations
        iterations = min(e.runs, cap) if cap else e.runs
        run_notes = list(notes)
        if iterations < e.runs:
            run_notes.append(f"runs capped at {cap} on {resolved.device.name} (max_iterations)")
        for (dtype, exp_size), exp in exports.items():
            if exp_size != size:
                continue
            for threads in e.threads:
                say(f"{e.name}: {exp.variant.key} on {target.key}, {threads} thread(s)")
                conditions = {
                    "config": cfg.name,
                    "config_file": str(cfg.source),
                    "config_sha256": cfg.sha256,
                    "experiment": e.name,
                }
                if run_notes:
                    conditions["notes"] = run_notes
                item = ExperimentRun(e.name, threads, e.mode, target.key, dtype, notes=list(run_notes))
                if e.mode == "xnntrace":
                    log_binary = binary
                    if e.kernel_log_runner:  # Arm's --verbose-runner: the kernel-log build
                        log_binary = pathrunner.from_path(
                            e.kernel_log_runner, f"{cfg.source}: {e.key} --verbose-runner"
                        )
                    item.kernel_log = session.kernel_log_run(
                        exp,
                        resolved,
                        out_dir,
                        f"{Path(exp.meta['pte']).stem}_{e.name}_t{threads}",
                        threads,
                        e.runner,
                        log_binary,
                        e.extra_args,
                        cfg.timeout_s,
                        e.cpus,
                    )
                    item.notes.append(item.kernel_log["note"])
                else:
                    how = session.Measurement(
                        threads,
                        iterations,
                        e.warmup,
                        e.runner,
                        binary,
                        cfg.timeout_s,
                        extra_args=e.extra_args,
                        cpus=e.cpus,
                    )
                    result = session.run_session(root, exp, resolved, how, say, conditions=conditions, target=target)
                    seen = result.record.conditions.get("sme2_kernels_seen", 0)
                    if not target.sme2 and seen:
                        item.notes.append(f"recorded as SME2 off, but {seen} operator type(s) ran SME2-only kernels")
                    item.result = result
                    if on_result is not None:
                        on_result(result)
                runs.append(item)
            inventory.cool_down(resolved.device, say)
    comparisons = [compare_pair(p, runs) for p in cfg.compare_pairs]
    summary = {
        "config": cfg.name,
        "config_file": str(cfg.source),
        "config_sha256": cfg.sha256,
        "format": cfg.format,
        "model": cfg.model,
        "pte": str(cfg.pte) if cfg.pte else None,
        "data_root": str(root.path),
        "started_at": started,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [r.to_json() for r in runs],
        "comparisons": comparisons,
    }
    path = atomic.write_json(out_dir / SUMMARY_FILE, summary)
    return ConfigRun(cfg, runs, comparisons, path, out_dir)


def _median_ratio(base: np.ndarray, cand: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(base, axis=axis) / np.median(cand, axis=axis)


def compare_pair(pair, runs: list[ExperimentRun]) -> dict:
    """One of the config's compare_pairs, per dtype: end-to-end medians, the speedup baseline /
    candidate with its bootstrap interval, and the category medians side by side."""
    out = {
        "label": pair.label or f"{pair.baseline.experiment} vs {pair.candidate.experiment}",
        "baseline": {"experiment": pair.baseline.experiment, "threads": pair.baseline.threads},
        "candidate": {"experiment": pair.candidate.experiment, "threads": pair.candidate.threads},
        "by_dtype": [],
    }

    def find(side, dtype):
        return next(
            (
                r.result
                for r in runs
                if r.experiment == side.experiment and r.threads == side.threads and r.dtype == dtype and r.result
            ),
            None,
        )

    for dtype in sorted({r.dtype for r in runs}):
        a, b = find(pair.baseline, dtype), find(pair.candidate, dtype)
        if a is None or b is None:
            continue
        base, cand = np.asarray(a.analysis.e2e_samples), np.asarray(b.analysis.e2e_samples)
        lo, hi = robust.bootstrap_ci((base, cand), _median_ratio)
        cats_a = {c.category: c.median_ms for c in a.analysis.category_table("blog").itertuples()}
        cats_b = {c.category: c.median_ms for c in b.analysis.category_table("blog").itertuples()}
        out["by_dtype"].append(
            {
                "dtype": dtype,
                "baseline_run_id": a.record.run_id,
                "candidate_run_id": b.record.run_id,
                "baseline_median_ms": float(np.median(base)),
                "candidate_median_ms": float(np.median(cand)),
                "speedup": float(np.median(base) / np.median(cand)),
                "speedup_ci95": [float(lo), float(hi)],
                "categories": [
                    {"category": c, "baseline_ms": cats_a.get(c), "candidate_ms": cats_b.get(c)}
                    for c in dict.fromkeys([*cats_a, *cats_b])
                ],
            }
        )
    return out
