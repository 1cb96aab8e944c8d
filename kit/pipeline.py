"""The profiling workflow cut along Dagster's partitions: model variant (`<model>-<dtype>`) and
target (`<device>.sme2-on|off`). The Dagster assets and `sme2 pipeline` both call these, so the
orchestrated and the command-line paths are one code path."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd

from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Target, Variant
from kit.core.settings import Settings
from kit.devices import inventory
from kit.devices.transports.local import Host, LocalTransport
from kit.export import artifact, exporter
from kit.models import registry
from kit.profile import config as experiment_config
from kit.profile import experiments, session
from kit.profile.runrecord import RUN_FILE, RunRecord
from kit.runners import recipes
from kit.stats import categories
from kit.store import ingest, recovery, warehouse
from kit.store import runs as stored_runs

__all__ = [
    "Settings",
    "PartitionRuns",
    "profile_partition",
    "store_runs",
    "export_partition",
    "build_partition",
    "run_config",
]


def target_partitions(root: DataRoot, host: Host | None = None) -> list[str]:
    """Targets of enabled devices that the device can plausibly honour without contacting it:
    the host is checked locally, emulated pairs work on a Linux host (qemu-user does not exist on
    macOS), remote devices may declare `sme2`. `host` describes this machine (default: the real one)."""
    host = host or Host.this_machine()
    out = []
    for dev in inventory.load_registry(root, host=host).values():
        if not dev.enabled or (dev.transport == "qemu" and not host.platform.startswith("linux")):
            continue
        for t in dev.targets():
            if dev.transport == "local":
                detected = LocalTransport(dev.name, host=host).detect_sme2()
            else:
                detected = dev.props.get("sme2") if dev.transport != "qemu" else None
            try:
                if detected is not None:
                    inventory.check_detected(dev, t, detected, host.platform)
                out.append(t.key)
            except Sme2Error:
                continue
    return out


def sizes_for(root: DataRoot, settings: Settings, targets: list[str] | None = None) -> list[str]:
    if settings.size:
        return [settings.size]
    reg = inventory.load_registry(root)
    keys = targets or target_partitions(root)
    return sorted({reg[Target.parse(k).device].size for k in keys if Target.parse(k).device in reg})


def export_partition(root: DataRoot, variant_key: str, settings: Settings, progress=None) -> dict[str, artifact.Export]:
    """Export one model partition at every size its targets need."""
    v = Variant.parse(variant_key)
    pkg = registry.get(v.model, settings.models_dir)
    return {
        size: exporter.export_variant(pkg, v.dtype, size, root, backend=v.backend, progress=progress)
        for size in sizes_for(root, settings, settings.targets or None)
    }


def build_partition(root: DataRoot, target_key: str, settings: Settings, progress=None):
    resolved = inventory.resolve(target_key, root)
    return resolved, recipes.runner_for(resolved, root, settings.runner, progress)


@dataclass
class PartitionRuns:
    """The runs of one variant x target partition, one per thread count, and how they came to be."""

    results: list[session.ProfileResult]
    pair_session: str | None = None  # the interleaved SME2 on/off session they were measured in
    paired_with: str | None = None  # the sibling target measured in that session
    adopted: bool = False  # measured earlier in the sibling's pair session, adopted now
    sibling_run_dirs: list[Path] = field(default_factory=list)  # measured now, left for the sibling

    @property
    def note(self) -> str:
        if self.adopted:
            return (
                f"adopted from pair session {self.pair_session}: measured interleaved with {self.paired_with} "
                "when that partition materialized (not measured again)"
            )
        if self.pair_session:
            return (
                f"measured interleaved with {self.paired_with} in pair session {self.pair_session}; "
                f"its {len(self.sibling_run_dirs)} run(s) wait in runs/ for that partition to adopt"
            )
        return "measured alone (no sibling SME2 target among the known targets)"


def _plan(v: Variant, targets: list[str], settings: Settings, root: DataRoot) -> session.ProfilePlan:
    return session.ProfilePlan(
        model=v.model,
        dtypes=[v.dtype],
        targets=targets,
        measure=settings.measure(),
        backend=v.backend,
        models_dir=settings.models_dir,
        rules_file=settings.rules_file(root),
    )


def _ts(text) -> pd.Timestamp:
    """A naive UTC timestamp from an ISO string or a warehouse TIMESTAMP."""
    ts = pd.Timestamp(text)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts


def adoptable_runs(root: DataRoot, v: Variant, target_key: str, settings: Settings) -> list[session.ProfileResult]:
    """Runs of this partition that a pair session measured (interleaved with the sibling target)
    and nothing stored yet, one per thread count the settings ask for, taken with the current
    export and runner, newer than both and than the newest stored run of their keys; the newest
    such session, or [] when there is none."""
    target = Target.parse(target_key)
    device = inventory.load_registry(root).get(target.device)
    if device is None:
        return []
    size, iterations = settings.size_on(device), settings.iterations_on(device)
    threads = sorted(settings.threads or device.threads)
    exp = artifact.find(root, v, size)
    if exp is None or "exported_at" not in exp.meta:
        return []
    binary = recipes.runner_for(inventory.resolve(target_key, root), root, settings.runner)
    not_before = max(_ts(exp.meta["exported_at"]), _ts(binary.manifest["built_at"]) if binary else pd.Timestamp.min)
    sessions: dict[str, list[RunRecord]] = {}
    for folder in root.runs.glob(f"*-{v.key}-{target_key}-{size}-t*"):
        if not (folder / RUN_FILE).exists():
            continue
        rec = RunRecord.load(folder)
        pair = rec.conditions.get("pair_session")
        if (
            pair
            and rec.variant == v.key
            and rec.target == target_key
            and rec.size == size
            and rec.runner == settings.runner
            and rec.iterations == iterations
            and rec.warmup == settings.warmup
            and rec.pte_sha256 == exp.meta["pte_sha256"]
            and rec.runner_sha256 == (binary.sha256 if binary else "")
            and _ts(rec.started_at) >= not_before
        ):
            sessions.setdefault(pair, []).append(rec)
    wh = warehouse.Warehouse.at(root)
    for _pair, recs in sorted(sessions.items(), key=lambda kv: max(r.started_at for r in kv[1]), reverse=True):
        if sorted(r.threads for r in recs) != threads:
            continue
        if any((root.run_path(r.run_id) / TAKEN).exists() for r in recs):
            continue  # a partition took this session's runs already (recovery may have stored them: fine)
        if wh.path.exists() and any(
            (newest := stored_runs.newest_start(wh, r.run_key)) is not None
            and not pd.isna(newest)
            and _ts(r.started_at) < _ts(newest)
            for r in recs
        ):
            continue  # something newer of the same key is stored: this session is stale
        rules = categories.load_rules(settings.rules_file(root))
        return [session.load_run(root.run_path(r.run_id), rules) for r in sorted(recs, key=lambda r: r.threads)]
    return []


TAKEN = "taken_by_partition"  # marker file: a partition materialization used this run folder


def _take(results: list[session.ProfileResult], target_key: str) -> None:
    """Mark run folders as used by their partition, so a pair session is adopted at most once."""
    for r in results:
        atomic.write_text(r.run_dir / TAKEN, f"{target_key}\n")


def profile_partition(
    root: DataRoot,
    variant_key: str,
    target_key: str,
    settings: Settings,
    known_targets: list[str] | None = None,
    progress=None,
) -> PartitionRuns:
    """Timing + ETDump runs of one variant on one target, for each thread count (no warehouse writes).

    SME2 on and off of one device are compared, so they are measured together: when the sibling
    target (same device, other flag) is among `known_targets`, both are measured in one session,
    interleaved block by block (on, off, on, off), and each run.json records the pair session.
    The sibling's runs are left in runs/; when its partition materializes next it adopts them
    instead of measuring again (if they are still current: see `adoptable_runs`)."""
    say = progress or (lambda msg: None)
    recovery.recover(root, say)  # a killed earlier start: reclaim staging, ingest committed runs
    v = Variant.parse(variant_key)
    target = Target.parse(target_key)
    sibling = Target(target.device, not target.sme2).key
    paired = bool(known_targets) and sibling in known_targets
    if paired:
        try:
            inventory.resolve(sibling, root)
        except Sme2Error as e:  # e.g. the sibling's device was disabled since: measure this one alone
            say(f"{target_key}: measuring without {sibling}: {e.message}")
            paired = False
    if paired:
        adopted = adoptable_runs(root, v, target_key, settings)
        if adopted:
            conditions = adopted[0].record.conditions
            result = PartitionRuns(adopted, conditions["pair_session"], sibling, adopted=True)
            say(f"{target_key}: {result.note}")
            _take(result.results, target_key)
            return result
    targets = [target_key, sibling] if paired else [target_key]
    results = session.execute(_plan(v, targets, settings, root), root, say)
    mine = [r for r in results if r.record.target == target_key]
    _take(mine, target_key)
    return PartitionRuns(
        mine,
        pair_session=mine[0].record.conditions.get("pair_session") if paired and mine else None,
        paired_with=sibling if paired else None,
        sibling_run_dirs=[r.run_dir for r in results if r.record.target != target_key],
    )


def store_runs(root: DataRoot, run_dirs: list, settings: Settings | None = None) -> list[str]:
    """Warehouse rows for each run folder (idempotent), labelled with the settings' category rules;
    returns the run ids."""
    rules = categories.load_rules((settings or Settings()).rules_file(root))
    ids = []
    for d in run_dirs:
        ingest.ingest_run(root, d, rules)
        ids.append(RunRecord.load(d).run_id)
    return ids


def profile_and_store(plan: session.ProfilePlan, root: DataRoot, progress=None) -> list[session.ProfileResult]:
    """`sme2 profile`: run a plan and write each run to the warehouse as soon as its folder is committed."""
    say = progress or (lambda msg: None)

    def store(result: session.ProfileResult) -> None:
        say(f"{result.record.target}: writing {result.record.run_id} to the warehouse")
        ingest.ingest_run(root, result.run_dir)

    recovery.recover(root, say)  # a killed earlier start: reclaim staging, ingest committed runs
    results = session.execute(plan, root, progress, on_result=store)
    announce(root, results, say)
    return results


HOOKS = "sme2.hooks"  # entry points called with (root, results) after runs made outside Dagster


def announce(root: DataRoot, results: list[session.ProfileResult], progress=None) -> None:
    """Tell the installed hooks about runs measured outside the orchestrator (`sme2 profile`, the
    MCP tools): the Dagster code location records them as materializations of their partitions, so
    the UI shows them (kit itself imports no Dagster). A failing hook never fails the profile."""
    say = progress or (lambda msg: None)
    for ep in entry_points(group=HOOKS):
        try:
            ep.load()(root, results)
        except Exception as e:  # noqa: BLE001 - the runs are stored; the UI record is a convenience
            say(f"hook {ep.name} failed ({type(e).__name__}: {e}); the runs are stored, the UI may not show them")


def run_config(
    cfg: experiment_config.Config | str | Path,
    root: DataRoot,
    device: str | None = None,
    progress=None,
    only: list[str] | None = None,
) -> experiments.ConfigRun:
    """`sme2 run --config FILE` (and `sme2 profile --config`, and the Dagster config asset): every
    experiment of an experiment config, each run written to the warehouse as soon as its folder is
    committed, then the config's comparisons and its summary file."""
    say = progress or (lambda msg: None)
    if not isinstance(cfg, experiment_config.Config):
        cfg = experiment_config.load(cfg, device=device)

    def store(result: session.ProfileResult) -> None:
        say(f"{result.record.target}: writing {result.record.run_id} to the warehouse")
        ingest.ingest_run(root, result.run_dir)

    recovery.recover(root, say)  # a killed earlier start: reclaim staging, ingest committed runs
    return experiments.run(cfg, root, say, on_result=store, only=only)
