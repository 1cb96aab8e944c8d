"""The nightly schedules (STOPPED on a new instance: turn them on in the UI, Automation, or with
`dagster schedule start`): every model variant on every target, one run per partition, and every
experiment config of <data root>/configs/, then the lab's DuckLake maintenance; the run queue (dagster.yaml) serializes runs per device
and on the local CPU. The SME2 on and off partitions of a device are measured together by whichever
of the two runs first (the other adopts its runs: kit.pipeline.profile_partition)."""

import dagster as dg

from kit.core import environment
from kit.profile import config as experiment_config
from sme2_assets import jobs
from sme2_assets.partitions import CONFIG, MODEL, TARGET, config_tags, run_tags
from sme2_assets.resources import Sme2

NIGHTLY_CRON = environment.get("SME2_NIGHTLY_CRON") or "0 2 * * *"


@dg.schedule(
    name="nightly_profile",
    cron_schedule=NIGHTLY_CRON,
    job=jobs.profile,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-profile every model x target each night (cron from $SME2_NIGHTLY_CRON).",
)
def nightly_profile(context: dg.ScheduleEvaluationContext, sme2: Sme2):
    settings = sme2.settings()
    root = settings.root()
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    models = context.instance.get_dynamic_partitions(MODEL.name)
    targets = [
        t for t in context.instance.get_dynamic_partitions(TARGET.name) if not settings.targets or t in settings.targets
    ]
    if not models or not targets:
        return dg.SkipReason("no model or target partitions yet (the sensors add them)")
    return [
        dg.RunRequest(
            partition_key=dg.MultiPartitionKey({"model": m, "target": t}),
            run_key=f"nightly|{night}|{m}|{t}",
            tags=run_tags(t, root),
        )
        for m in models
        for t in targets
    ]


@dg.schedule(
    name="nightly_configs",
    cron_schedule=NIGHTLY_CRON,
    job=jobs.experiment_configs,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Re-run every experiment config in <data root>/configs/ each night (same cron as nightly_profile).",
)
def nightly_configs(context: dg.ScheduleEvaluationContext, sme2: Sme2):
    root = sme2.settings().root()
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    known = set(context.instance.get_dynamic_partitions(CONFIG.name))
    found = [f for f in experiment_config.discover(root.configs) if f.config is not None and f.name in known]
    if not found:
        return dg.SkipReason("no experiment config partitions yet (the experiment_configs sensor adds them)")
    return [
        dg.RunRequest(
            partition_key=f.name,
            run_key=f"nightly|{night}|config|{f.name}",
            tags=config_tags(f.config.devices, root),
        )
        for f in found
    ]


# After the night's measurements (their publishes are what it merges); the same STOPPED default.
LAKE_MAINTENANCE_CRON = "0 7 * * *"


@dg.schedule(
    name="nightly_lake_maintenance",
    cron_schedule=LAKE_MAINTENANCE_CRON,
    job=jobs.lake_maintenance_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Maintain the lab's DuckLake each morning at 07:00, after the nightly runs (sme2 warehouse compact).",
)
def nightly_lake_maintenance(context: dg.ScheduleEvaluationContext):
    return dg.RunRequest(run_key=f"lake|{context.scheduled_execution_time:%Y-%m-%d}")


ALL = [nightly_profile, nightly_configs, nightly_lake_maintenance]
