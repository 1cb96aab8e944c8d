"""Config-partitioned asset: an experiment config (ours in TOML, Arm's kit's JSON) dropped into
`<data root>/configs/` is one partition; materializing it runs the config through kit.pipeline
(`sme2 run --config` is the same code path) and writes its runs to the warehouse."""

import dagster as dg
import pandas as pd

from kit.pipeline import run_config
from kit.profile import config as experiment_config
from sme2_assets.metadata import number, numbers, table
from sme2_assets.partitions import CONFIG
from sme2_assets.resources import Sme2


@dg.asset(
    partitions_def=CONFIG,
    group_name="configs",
    description="Every experiment of a config in <data root>/configs/: its runs (run folders and warehouse rows), compare_pairs and experiments.json.",
)
def config_experiments(context: dg.AssetExecutionContext, sme2: Sme2):
    root = sme2.settings().root()
    cfg = experiment_config.find(root.configs, context.partition_key)
    done = run_config(cfg, root, progress=context.log.info)
    rows = pd.DataFrame([r.to_json() for r in done.runs])
    shown = [
        c
        for c in ("experiment", "dtype", "target", "threads", "mode", "runner_recipe", "e2e_median_ms", "run_id")
        if c in rows
    ]
    speedups = {
        f"speedup_{i}_{d['dtype']}": number(d["speedup"]) for i, c in enumerate(done.comparisons) for d in c["by_dtype"]
    }
    return dg.Output(
        {"summary": str(done.summary), "run_ids": [r.result.record.run_id for r in done.runs if r.result]},
        metadata={
            "config_file": dg.MetadataValue.path(str(cfg.source)),
            "config_sha256": cfg.sha256,
            "summary": dg.MetadataValue.path(str(done.summary)),
            "runs": table(rows[shown]) if shown else 0,
            "comparisons": dg.MetadataValue.json(done.comparisons),
            **numbers(speedups),
        },
    )
