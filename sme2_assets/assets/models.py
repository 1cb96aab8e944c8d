"""Model-partitioned assets: the package's source (by content hash) and the exported program."""

import dagster as dg

from kit.analysis import validation
from kit.core.names import Variant
from kit.models import registry
from kit.pipeline import export_partition
from sme2_assets import checks
from sme2_assets.partitions import MODEL
from sme2_assets.resources import Sme2


@dg.asset(
    partitions_def=MODEL,
    group_name="models",
    description="The model package folder, identified by the hash of its files.",
)
def model_source(context: dg.AssetExecutionContext, sme2: Sme2) -> dg.MaterializeResult:
    v = Variant.parse(context.partition_key)
    pkg = registry.get(v.model, sme2.settings().models_dir)
    pkg.spec.check_dtype(v.dtype)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(pkg.path)),
            "content_hash": pkg.content_hash,
            "kind": pkg.kind,
            "dtypes": ", ".join(pkg.spec.supported_dtypes),
            "unsupported_dtypes": dg.MetadataValue.json(pkg.spec.unsupported),
            "sizes": dg.MetadataValue.json(pkg.spec.sizes),
        },
        data_version=dg.DataVersion(pkg.content_hash),
    )


@dg.asset(
    partitions_def=MODEL,
    deps=[model_source],
    group_name="models",
    description="The .pte, ETRecord, inputs and export_meta.json of the variant at every size its targets need.",
    check_specs=[checks.PROGRAM_VALID],
)
def exported_program(context: dg.AssetExecutionContext, sme2: Sme2):
    exports = export_partition(sme2.root(), context.partition_key, sme2.settings(), progress=context.log.info)
    gates = {size: validation.program(e) for size, e in exports.items()}
    table = (
        "| size | pte | MB | partitions | delegated ops | portable ops | max rel err | export s |\n|---|---|---|---|---|---|---|---|\n"
        + "\n".join(
            f"| {s} | {e.pte.name} | {e.meta['pte_bytes'] / 1e6:.2f} | {e.meta['delegate_partitions']} | {e.meta['delegated_ops']} | {', '.join(e.meta['non_delegated_op_names'])} | {e.meta['numerical_check']['max_rel_error']:.2e} | {e.meta['export_seconds']} |"
            for s, e in exports.items()
        )
    )
    first = next(iter(exports.values()))
    yield dg.MaterializeResult(
        metadata={
            "exports": dg.MetadataValue.md(table),
            "folders": dg.MetadataValue.json({s: str(e.folder) for s, e in exports.items()}),
            "pte_sha256": dg.MetadataValue.json({s: e.meta["pte_sha256"] for s, e in exports.items()}),
            "delegate_partitions": first.meta["delegate_partitions"],
        },
        check_results=[checks.result(checks.PROGRAM_VALID, gates.values())],
    )
