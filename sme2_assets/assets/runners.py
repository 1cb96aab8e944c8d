"""Target-partitioned asset: the native runner binary for the target's platform and recipe."""

import dagster as dg

from kit.pipeline import build_partition
from sme2_assets.partitions import TARGET
from sme2_assets.resources import Sme2


@dg.asset(
    partitions_def=TARGET,
    group_name="runners",
    description="The C++ runner built for the target's platform (cached by sources, executorch version, platform and flags).",
)
def runner_binary(context: dg.AssetExecutionContext, sme2: Sme2) -> dg.MaterializeResult:
    resolved, binary = build_partition(sme2.root(), context.partition_key, sme2.settings(), progress=context.log.info)
    if binary is None:
        return dg.MaterializeResult(metadata={"runner": "pybind (no binary)"})
    m = binary.manifest
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(binary.path)),
            "sha256": m["binary_sha256"],
            "platform": m["platform"],
            "recipe": m["recipe"],
            "executorch": m["executorch_version"],
            "compiler": m["compiler_version"],
            "build_seconds": m["build_seconds"],
            "emulated_target": resolved.device.emulated,
        },
        data_version=dg.DataVersion(m["binary_sha256"]),
    )
