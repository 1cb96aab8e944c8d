"""Sensors: new or changed model packages, and devices added to the registry."""

import json

import dagster as dg

from kit import pipeline
from kit.core.home import DataRoot
from kit.core.names import Variant
from kit.models import registry
from sme2_assets import jobs
from sme2_assets.partitions import MODEL, TARGET, run_tags


def _models_dir() -> str | None:
    import os

    return os.environ.get("SME2_MODELS") or None


@dg.sensor(
    name="model_packages",
    jobs=[jobs.prepare_models, jobs.profile],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds model partitions and requests profiling runs when a package in models/ is new or changed (by content hash).",
)
def model_package_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    state = json.loads(context.cursor) if context.cursor else {"hashes": {}, "problems": {}}
    hashes, problems = state.get("hashes", {}), {}
    targets = list(context.instance.get_dynamic_partitions(TARGET.name)) or pipeline.target_partitions(
        DataRoot.resolve()
    )
    known = set(context.instance.get_dynamic_partitions(MODEL.name))
    new_keys, requests = [], []
    for pkg in registry.discover(_models_dir()):
        if not pkg.ok:
            problems[pkg.name] = pkg.error  # reported, never stops the others
            context.log.warning(f"model package {pkg.name} is broken: {pkg.error}")
            continue
        if hashes.get(pkg.name) == pkg.content_hash:
            continue
        keys = [Variant(pkg.name, d).key for d in pkg.spec.supported_dtypes]
        new_keys += [k for k in keys if k not in known]
        for k in keys:
            requests.append(
                dg.RunRequest(
                    job_name=jobs.prepare_models.name, partition_key=k, run_key=f"prepare|{k}|{pkg.content_hash[:12]}"
                )
            )
            for t in targets:
                requests.append(
                    dg.RunRequest(
                        job_name=jobs.profile.name,
                        partition_key=dg.MultiPartitionKey({"model": k, "target": t}),
                        run_key=f"profile|{k}|{t}|{pkg.content_hash[:12]}",
                        tags=run_tags(t),
                    )
                )
        hashes[pkg.name] = pkg.content_hash
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[MODEL.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"hashes": hashes, "problems": problems}, sort_keys=True),
    )


@dg.sensor(
    name="devices",
    jobs=[jobs.build_runners],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds target partitions for the devices in the registry and builds their runners.",
)
def device_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    known = set(context.instance.get_dynamic_partitions(TARGET.name))
    new = [t for t in pipeline.target_partitions(DataRoot.resolve()) if t not in known]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(job_name=jobs.build_runners.name, partition_key=t, run_key=f"runner|{t}", tags=run_tags(t))
            for t in new
        ],
        dynamic_partitions_requests=[TARGET.build_add_request(new)] if new else [],
    )


ALL = [model_package_sensor, device_sensor]
