"""Runs measured outside Dagster (`sme2 profile`, the MCP tools) recorded on the data root's
instance as materializations of their partitions (kit.pipeline.announce calls this through the
`sme2.hooks` entry point), so the UI shows them as materialized, not Missing, with where they are."""

from __future__ import annotations

import dagster as dg

from kit.core.home import DataRoot
from sme2_assets.commands import instance_home
from sme2_assets.partitions import MODEL, TARGET

ASSETS = ("device_trace", "warehouse_rows")  # what `sme2 profile` makes: the runs and their rows


def record_runs(root: DataRoot, results) -> None:
    if not results:
        return
    instance_home(root)
    with dg.DagsterInstance.get() as instance:
        for name, keys in (
            (MODEL.name, {r.record.variant for r in results}),
            (TARGET.name, {r.record.target for r in results}),
        ):
            new = sorted(k for k in keys if not instance.has_dynamic_partition(name, k))
            if new:
                instance.add_dynamic_partitions(name, new)
        for r in results:
            partition = dg.MultiPartitionKey({"model": r.record.variant, "target": r.record.target})
            for asset in ASSETS:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        asset_key=asset,
                        partition=partition,
                        description="measured outside Dagster (sme2 profile or an MCP tool)",
                        metadata={
                            "run_id": r.record.run_id,
                            "run_dir": dg.MetadataValue.path(str(r.run_dir)),
                            "threads": r.record.threads,
                            "emulated": r.record.emulated,
                        },
                    )
                )
