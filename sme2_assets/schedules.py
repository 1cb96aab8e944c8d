"""The nightly schedule: every model variant on every target, one run per partition; the run
queue (dagster.yaml) serializes runs per device and on the local CPU."""

import os

import dagster as dg

from sme2_assets import jobs
from sme2_assets.partitions import MODEL, TARGET, run_tags

NIGHTLY_CRON = os.environ.get("SME2_NIGHTLY_CRON", "0 2 * * *")


@dg.schedule(
    name="nightly_profile",
    cron_schedule=NIGHTLY_CRON,
    job=jobs.profile,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Re-profile every model x target each night (cron from $SME2_NIGHTLY_CRON).",
)
def nightly_profile(context: dg.ScheduleEvaluationContext):
    night = context.scheduled_execution_time.strftime("%Y-%m-%d")
    models = context.instance.get_dynamic_partitions(MODEL.name)
    targets = context.instance.get_dynamic_partitions(TARGET.name)
    if not models or not targets:
        return dg.SkipReason("no model or target partitions yet (the sensors add them)")
    return [
        dg.RunRequest(
            partition_key=dg.MultiPartitionKey({"model": m, "target": t}),
            run_key=f"nightly|{night}|{m}|{t}",
            tags=run_tags(t),
        )
        for m in models
        for t in targets
    ]


ALL = [nightly_profile]
