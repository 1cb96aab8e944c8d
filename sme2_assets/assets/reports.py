"""Model-partitioned assets that read the warehouse across targets: the SME2 comparison and the report."""

import dagster as dg

from kit.analysis import compare as kit_compare
from kit.core.errors import Sme2Error
from kit.devices import inventory
from kit.report import builder as kit_report
from kit.store.warehouse import Warehouse
from sme2_assets.assets.profiling import category_breakdown, kernel_view
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
    description="SME2 on vs off per device: end-to-end speedup with a bootstrap interval, per-category and per-operator speedups, share shift (emulated: counts and kernels only).",
    automation_condition=dg.AutomationCondition.eager(),
)
def sme2_comparison(context: dg.AssetExecutionContext, sme2: Sme2) -> dg.MaterializeResult:
    comps = _pairs(sme2.root(), context.partition_key)
    md = (
        "\n\n".join(f"**{c.headline()}**\n\n" + kit_compare.blog_table(c).to_markdown(index=False) for c in comps)
        or "_no SME2 on/off pairs in the warehouse yet_"
    )
    return dg.MaterializeResult(
        metadata={
            "comparison": dg.MetadataValue.md(md),
            "devices": len(comps),
            "speedups": dg.MetadataValue.json({c.device: c.e2e.get("speedup") for c in comps}),
        }
    )


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
            "runs": dg.MetadataValue.json(out.run_ids),
        }
    )
