"""The lab's DuckLake maintenance as an asset: what `sme2 warehouse compact` does, nightly
(kit.store.shared.SharedStore.compact: duplicate publishes deleted, adjacent files merged, old
snapshots expired, unneeded files deleted). Without a lake ($SME2_SHARED_STORE unset) it records that
there was nothing to do."""

import dagster as dg

from kit.store.shared import SharedStore

KEEP_DAYS = 30  # time travel (sme2 report --at, sme2 sql --at) reaches back this far


@dg.asset(
    group_name="warehouse",
    description=f"Maintenance of the lab's DuckLake: duplicate publishes deleted, adjacent files merged, snapshots older than {KEEP_DAYS} days expired, files no snapshot needs deleted (the same as sme2 warehouse compact).",
)
def lake_maintenance(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    store = SharedStore.from_env()
    if store is None:
        return dg.MaterializeResult(metadata={"lake": "none ($SME2_SHARED_STORE is not set): nothing to maintain"})
    done = store.compact(keep_days=KEEP_DAYS, say=context.log.info)
    return dg.MaterializeResult(
        metadata={
            "lake": store.describe(),  # without the catalog's credentials
            "runs": int(done.runs),
            "duplicate publishes removed": int(done.duplicates_removed),
            "data files before": int(done.files_before),
            "data files after": int(done.files_after),
            "snapshots expired": int(done.snapshots_expired),
            "files deleted": int(done.files_deleted),
        }
    )
