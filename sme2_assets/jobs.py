"""Asset jobs, one per partitioning: Dagster runs one partitions definition per run."""

import dagster as dg

from sme2_assets.assets import (
    category_breakdown,
    config_experiments,
    device_trace,
    exported_program,
    kernel_view,
    lake_maintenance,
    model_source,
    report,
    robust_stats,
    runner_binary,
    sme2_comparison,
    warehouse_rows,
)
from sme2_assets.partitions import CONFIG, MODEL, MODEL_TARGET, TARGET

prepare_models = dg.define_asset_job(
    "prepare_models",
    selection=dg.AssetSelection.assets(model_source, exported_program),
    partitions_def=MODEL,
    description="Model source and exported program of a model variant.",
)
build_runners = dg.define_asset_job(
    "build_runners",
    selection=dg.AssetSelection.assets(runner_binary),
    partitions_def=TARGET,
    description="The runner binary of a target.",
)
profile = dg.define_asset_job(
    "profile",
    selection=dg.AssetSelection.assets(device_trace, warehouse_rows, robust_stats, category_breakdown, kernel_view),
    partitions_def=MODEL_TARGET,
    description="Profile one variant on one target and write the warehouse.",
)
analysis = dg.define_asset_job(
    "analysis",
    selection=dg.AssetSelection.assets(sme2_comparison, report),
    partitions_def=MODEL,
    description="SME2 comparison and report of a variant, from the warehouse.",
)

experiment_configs = dg.define_asset_job(
    "experiment_configs",
    selection=dg.AssetSelection.assets(config_experiments),
    partitions_def=CONFIG,
    description="Run an experiment config from <data root>/configs/ (the same as sme2 run --config).",
)

lake_maintenance_job = dg.define_asset_job(
    "maintain_lake",  # not the asset's name: Dagster wants op and job names apart
    selection=dg.AssetSelection.assets(lake_maintenance),
    description="Maintain the lab's DuckLake (merge files, expire snapshots, delete unneeded files).",
)

ALL = [prepare_models, build_runners, profile, analysis, experiment_configs, lake_maintenance_job]
