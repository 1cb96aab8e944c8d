"""The profiling workflow cut along Dagster's partitions: model variant (`<model>-<dtype>`) and
target (`<device>.sme2-on|off`). The Dagster assets and `sme2 pipeline` both call these, so the
orchestrated and the command-line paths are one code path."""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.core import names
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Target, Variant
from kit.devices import inventory
from kit.devices.transports.local import LocalTransport
from kit.export import exporter
from kit.models import registry
from kit.profile import session
from kit.profile.runrecord import RunRecord
from kit.runners import recipes
from kit.store import recovery, warehouse


@dataclass
class Settings:
    """Knobs of an orchestrated run (Dagster resource config; CLI options)."""

    models_dir: str | None = None
    size: str | None = None  # None: each device's default (full on hardware, small emulated)
    iterations: int = 20
    warmup: int = 3
    threads: list[int] | None = None
    runner: str = "native"
    cv_bound_percent: float = 15.0
    timeout_s: float = 900.0
    targets: list[str] = field(default_factory=list)  # empty: every target of every enabled device


def model_partitions(root: DataRoot, models_dir: str | None = None) -> tuple[list[str], dict[str, str]]:
    """Partition keys of every healthy package x supported dtype, and {package: error} for the rest."""
    keys, problems = [], {}
    for pkg in registry.discover(models_dir):
        if not pkg.ok:
            problems[pkg.name] = pkg.error
            continue
        keys += [Variant(pkg.name, d).key for d in pkg.spec.supported_dtypes]
    return keys, problems


def target_partitions(root: DataRoot) -> list[str]:
    """Targets of enabled devices that the device can plausibly honour without contacting it:
    the host is checked locally, emulated pairs always work, remote devices may declare `sme2`."""
    out = []
    for dev in inventory.load_registry(root).values():
        if not dev.enabled:
            continue
        for t in dev.targets():
            if dev.transport == "local":
                detected = LocalTransport(dev.name).detect_sme2()
            else:
                detected = dev.props.get("sme2") if dev.transport != "qemu" else None
            try:
                if detected is not None:
                    inventory.check_sme2(
                        dev, t, type("Caps", (), {"detect_sme2": staticmethod(lambda d=detected: d)})()
                    )
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


def export_partition(root: DataRoot, variant_key: str, settings: Settings, progress=None) -> dict[str, exporter.Export]:
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


def profile_partition(
    root: DataRoot, variant_key: str, target_key: str, settings: Settings, progress=None
) -> list[session.ProfileResult]:
    """Timing + ETDump runs of one variant on one target, for each thread count. Its runs are not
    written to the warehouse (store_runs does that); run folders an interrupted earlier start left
    un-ingested are (kit.store.recovery, first)."""
    v = Variant.parse(variant_key)
    plan = session.ProfilePlan(
        model=v.model,
        dtypes=[v.dtype],
        targets=[target_key],
        size=settings.size,
        threads=settings.threads,
        iterations=settings.iterations,
        warmup=settings.warmup,
        runner=settings.runner,
        backend=v.backend,
        timeout_s=settings.timeout_s,
        models_dir=settings.models_dir,
    )
    recovery.recover(root, progress)  # a killed earlier start: reclaim staging, ingest committed runs
    return session.execute(plan, root, progress)


def store_runs(root: DataRoot, run_dirs: list) -> list[str]:
    """Warehouse rows for each run folder (idempotent); returns the run ids."""

    ids = []
    for d in run_dirs:
        warehouse.ingest_run(root, d)
        ids.append(RunRecord.load(d).run_id)
    return ids


def device_of(target_key: str) -> str:
    return names.Target.parse(target_key).device


def profile_and_store(plan: session.ProfilePlan, root: DataRoot, progress=None) -> list[session.ProfileResult]:
    """`sme2 profile`: run a plan and write each run to the warehouse as soon as its folder is committed."""
    say = progress or (lambda msg: None)

    def store(result: session.ProfileResult) -> None:
        say(f"{result.record.target}: writing {result.record.run_id} to the warehouse")
        warehouse.ingest_run(root, result.run_dir)

    recovery.recover(root, say)  # a killed earlier start: reclaim staging, ingest committed runs
    return session.execute(plan, root, progress, on_result=store)
