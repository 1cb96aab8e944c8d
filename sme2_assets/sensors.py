"""Sensors: new or changed model packages, devices added to the registry, and the automation
conditions of the analysis assets. The sensors that launch measurements or builds start STOPPED on
a new instance (opening the UI launches nothing; `sme2 ui` and the learning path say how to turn
them on); the analysis automation, which measures nothing, starts running. Where the data root and the model packages are comes from the
`sme2` resource, never from the environment directly."""

import json

import dagster as dg

from kit import pipeline
from kit.core.names import Variant
from kit.models import registry
from kit.profile import config as experiment_config
from sme2_assets import jobs
from sme2_assets.assets import report, sme2_comparison
from sme2_assets.partitions import CONFIG, MODEL, TARGET, build_tags, config_tags, local_tags, run_tags
from sme2_assets.resources import Sme2


def _targets(context, sme2: Sme2, root) -> list[str]:
    wanted = sme2.settings().targets
    known = list(context.instance.get_dynamic_partitions(TARGET.name)) or pipeline.target_partitions(root)
    return [t for t in known if not wanted or t in wanted]


@dg.sensor(
    name="model_packages",
    jobs=[jobs.prepare_models, jobs.profile],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Adds model partitions and requests profiling runs when a package in models/ is new or changed (by content hash).",
)
def model_package_sensor(context: dg.SensorEvaluationContext, sme2: Sme2) -> dg.SensorResult:
    state = json.loads(context.cursor) if context.cursor else {"hashes": {}, "problems": {}}
    hashes, problems = state.get("hashes", {}), {}
    settings = sme2.settings()
    root = settings.root()
    targets = _targets(context, sme2, root)
    known = set(context.instance.get_dynamic_partitions(MODEL.name))
    measured = {str(k) for k in context.instance.get_materialized_partitions(dg.AssetKey("device_trace"))}
    exported = {str(k) for k in context.instance.get_materialized_partitions(dg.AssetKey("exported_program"))}
    new_keys, requests = [], []
    for pkg in registry.discover(settings.models_dir):
        if not pkg.ok:
            problems[pkg.name] = pkg.error  # reported, never stops the others
            context.log.warning(f"model package {pkg.name} is broken: {pkg.error}")
            continue
        if hashes.get(pkg.name) == pkg.content_hash:
            continue
        keys = [Variant(pkg.name, d).key for d in pkg.spec.supported_dtypes]
        new_keys += [k for k in keys if k not in known]
        # A package first seen (no cursor yet: the sensor was just turned on) is measured where it
        # never was; a changed package (its hash moved) is measured everywhere again.
        first_sight = pkg.name not in hashes
        for k in keys:
            if not (first_sight and k in exported):
                requests.append(
                    dg.RunRequest(
                        job_name=jobs.prepare_models.name,
                        partition_key=k,
                        run_key=f"prepare|{k}|{pkg.content_hash[:12]}",
                        tags=local_tags(),  # an export is CPU-heavy: never beside a local measurement
                    )
                )
            for t in targets:
                if first_sight and f"{k}|{t}" in measured:
                    continue
                requests.append(
                    dg.RunRequest(
                        job_name=jobs.profile.name,
                        partition_key=dg.MultiPartitionKey({"model": k, "target": t}),
                        run_key=f"profile|{k}|{t}|{pkg.content_hash[:12]}",
                        tags=run_tags(t, root),
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
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Adds target partitions for the devices in the registry and builds their runners.",
)
def device_sensor(context: dg.SensorEvaluationContext, sme2: Sme2) -> dg.SensorResult:
    settings = sme2.settings()
    known = set(context.instance.get_dynamic_partitions(TARGET.name))
    root = settings.root()
    new = [
        t
        for t in pipeline.target_partitions(root)
        if t not in known and (not settings.targets or t in settings.targets)
    ]
    return dg.SensorResult(
        run_requests=[
            # A build compiles here (in a lab: on the device's lab host), whatever the target: it
            # holds that CPU, not the device.
            dg.RunRequest(
                job_name=jobs.build_runners.name, partition_key=t, run_key=f"runner|{t}", tags=build_tags(t, root)
            )
            for t in new
        ],
        dynamic_partitions_requests=[TARGET.build_add_request(new)] if new else [],
    )


automation = dg.AutomationConditionSensorDefinition(
    "analysis_automation",
    target=dg.AssetSelection.assets(sme2_comparison, report),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    run_tags=local_tags(),  # charts and reports are local CPU work too
    emit_backfills=False,  # plain runs, so the queue's tag limits apply to each
    description="Evaluates the eager automation conditions of sme2_comparison and report: a variant's analysis is requested once its profiling views are updated and none is missing or in progress.",
)


@dg.sensor(
    name="experiment_configs",
    jobs=[jobs.experiment_configs],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Watches <data root>/configs/: a new or changed experiment config (.toml, or Arm's kit's .json) becomes a config partition and is run; a broken one is reported.",
)
def experiment_config_sensor(context: dg.SensorEvaluationContext, sme2: Sme2) -> dg.SensorResult:
    state = json.loads(context.cursor) if context.cursor else {"hashes": {}, "problems": {}}
    hashes, problems = state.get("hashes", {}), {}
    root = sme2.settings().root()
    known = set(context.instance.get_dynamic_partitions(CONFIG.name))
    new_keys, requests = [], []
    for found in experiment_config.discover(root.configs):
        if found.config is None:
            problems[found.path.name] = found.error  # reported, never stops the others
            context.log.warning(f"experiment config {found.path} is refused: {found.error}")
            continue
        if hashes.get(found.name) == found.sha256:
            continue
        if found.name not in known:
            new_keys.append(found.name)
        requests.append(
            dg.RunRequest(
                job_name=jobs.experiment_configs.name,
                partition_key=found.name,
                run_key=f"config|{found.name}|{found.sha256[:12]}",
                tags=config_tags(found.config.devices, root),
            )
        )
        hashes[found.name] = found.sha256
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[CONFIG.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"hashes": hashes, "problems": problems}, sort_keys=True),
    )


ALL = [model_package_sensor, device_sensor, experiment_config_sensor, automation]
