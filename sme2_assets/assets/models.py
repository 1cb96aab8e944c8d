"""Model-partitioned assets: the package's source (by content hash) and the exported program."""

import dagster as dg
import pandas as pd

from kit.analysis import validation
from kit.core.names import Variant
from kit.models import registry
from kit.pipeline import export_partition
from sme2_assets import checks
from sme2_assets.metadata import number, numbers, table
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
    settings = sme2.settings()
    exports = export_partition(settings.root(), context.partition_key, settings, progress=context.log.info)
    gates = {size: validation.program(e) for size, e in exports.items()}
    rows = pd.DataFrame(
        [
            {
                "size": s,
                "pte": e.pte.name,
                "pte_mb": e.meta["pte_bytes"] / 1e6,
                "partitions": e.meta["delegate_partitions"],
                "delegated_ops": e.meta["delegated_ops"],
                "portable_ops": ", ".join(e.meta["non_delegated_op_names"]),
                "max_rel_error": e.meta["numerical_check"]["max_rel_error"],
                "export_s": e.meta["export_seconds"],
            }
            for s, e in exports.items()
        ]
    )
    first = next(iter(exports.values()))
    per_size = {}
    for r in rows.itertuples():
        per_size |= {
            f"pte_mb_{r.size}": number(r.pte_mb),
            f"max_rel_error_{r.size}": number(r.max_rel_error),
            f"export_seconds_{r.size}": number(r.export_s),
        }
    yield dg.MaterializeResult(
        metadata={
            "exports": table(rows, digits=None),
            "folders": dg.MetadataValue.json({s: str(e.folder) for s, e in exports.items()}),
            "pte_sha256": dg.MetadataValue.json({s: e.meta["pte_sha256"] for s, e in exports.items()}),
            "delegate_partitions": first.meta["delegate_partitions"],
            **numbers(per_size),
        },
        check_results=[checks.result(checks.PROGRAM_VALID, gates.values())],
    )
