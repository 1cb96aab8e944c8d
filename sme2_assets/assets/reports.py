"""Model-partitioned assets that read the warehouse across targets: the SME2 comparison and the report."""

import dagster as dg

from kit.analysis import compare as kit_compare
from kit.core.errors import Sme2Error
from kit.devices import inventory
from kit.report import builder as kit_report
from kit.report import comparison as kit_comparison_files
from kit.store.warehouse import Warehouse
from sme2_assets.assets.profiling import category_breakdown, kernel_view
from sme2_assets.metadata import number, numbers, slug, table
from sme2_assets.partitions import MODEL, ON_MODEL
from sme2_assets.resources import Sme2


def _pairs(root, variant: str) -> list[kit_compare.Comparison]:
    wh = Warehouse.at(root)
    out = []
    for dev in inventory.load_registry(root):
        try:
            out.append(kit_compare.compare(wh, variant, dev))
        except Sme2Error:
            continue
    return out


@dg.asset(
    partitions_def=MODEL,
    deps=[
        dg.AssetDep(category_breakdown, partition_mapping=ON_MODEL),
        dg.AssetDep(kernel_view, partition_mapping=ON_MODEL),
    ],
    group_name="analysis",
    description="SME2 on vs off per device: end-to-end speedup with a bootstrap interval, per-category and per-operator speedups, share shift (emulated: counts and kernels only); a comparison folder with Arm's kit files.",
    automation_condition=dg.AutomationCondition.eager(),
)
def sme2_comparison(context: dg.AssetExecutionContext, sme2: Sme2) -> dg.MaterializeResult:
    comps = _pairs(sme2.root(), context.partition_key)
    meta: dict = {"devices": len(comps)}
    numeric: dict = {}
    for c in comps:
        d = slug(c.device)
        meta[f"headline_{d}"] = c.headline()
        meta[f"categories_{d}"] = table(c.categories)
        meta[f"folder_{d}"] = dg.MetadataValue.path(str(kit_comparison_files.write(sme2.root(), c).folder))
        numeric[f"off_ms_{d}"] = number(c.e2e.get("a_ms"))  # run A is SME2 off, B on
        numeric[f"on_ms_{d}"] = number(c.e2e.get("b_ms"))
        if not c.emulated:  # emulated times are not hardware times: no speedups
            numeric[f"speedup_{d}"] = number(c.e2e.get("speedup"))
            numeric[f"speedup_ci_low_{d}"] = number(c.e2e.get("ci_low"))
            numeric[f"speedup_ci_high_{d}"] = number(c.e2e.get("ci_high"))
            for r in c.categories.itertuples():
                numeric[f"speedup_{d}_{slug(r.category)}"] = number(getattr(r, "speedup", None))
        for r in c.categories.itertuples():
            numeric[f"share_on_{d}_{slug(r.category)}"] = number(r.share_b)
    if not comps:
        meta["comparison"] = "no SME2 on/off pairs in the warehouse yet"
    return dg.MaterializeResult(metadata={**meta, **numbers(numeric)})


@dg.asset(
    partitions_def=MODEL,
    deps=[sme2_comparison],
    group_name="analysis",
    description="Markdown + self-contained HTML report with charts (PNG copies), every number from the warehouse with its run ids.",
    automation_condition=dg.AutomationCondition.eager(),
)
def report(context: dg.AssetExecutionContext, sme2: Sme2) -> dg.MaterializeResult:
    out = kit_report.build(sme2.root(), context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "markdown": dg.MetadataValue.path(str(out.markdown)),
            "html": dg.MetadataValue.path(str(out.html)),
            "summary": dg.MetadataValue.md(out.summary_md),
            "run_ids": dg.MetadataValue.json(out.run_ids),
            "runs": len(out.run_ids),
        }
    )
