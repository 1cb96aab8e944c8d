"""The validation gates as Dagster asset checks. The logic is in kit.analysis.validation and kit.analysis.regress;
each asset declares its specs from here and yields `result(...)`."""

import json

import dagster as dg

PROGRAM_VALID = dg.AssetCheckSpec(
    "program_valid",
    asset="exported_program",
    description=".pte matches its meta (sha256) and passed the numerical check",
    blocking=True,
)
ETDUMP_VALID = dg.AssetCheckSpec(
    "etdump_valid", asset="device_trace", description="ETDump non-empty, with delegate operator events", blocking=True
)
NO_REGRESSION = dg.AssetCheckSpec(
    "no_regression",
    asset="warehouse_rows",
    description="newest run vs the warehouse history of its key: Mann-Whitney U + BH on hardware; kernels and operator mix on emulated targets. A confirmed end-to-end slowdown beyond the resource's regression_block_ratio fails with ERROR severity and blocks the views downstream; smaller findings fail with WARN (Dagster blocks only on ERROR).",
    blocking=True,
)
STATS_COMPLETE = dg.AssetCheckSpec(
    "stats_complete",
    asset="robust_stats",
    description="every operator has statistics over every iteration; end-to-end CV under the configured bound",
)
CATEGORIES_PARTITION = dg.AssetCheckSpec(
    "categories_partition",
    asset="category_breakdown",
    description="in both schemes, the category sums of the stored operator events add up to their operator total in every iteration, and the breakdown shown is the median of those sums",
    blocking=True,
)
SME2_KERNELS = dg.AssetCheckSpec(
    "sme2_kernels",
    asset="kernel_view",
    description="with SME2 on, fp32/int8 GEMMs and convolutions use SME2-only kernels; with SME2 off, never",
)


def result(
    spec: dg.AssetCheckSpec, gates, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """One check result from kit gates (kit.analysis.validation.Gate or kit.analysis.regress.Finding). With nothing
    to check (no runs, no gates) the check fails with WARN: an empty check never passes."""
    gates = list(gates)
    if not gates:
        return dg.AssetCheckResult(
            check_name=spec.name,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"detail": "nothing to check", "gates": 0},
        )
    details = [json.loads(json.dumps(getattr(g, "metadata", {}) or {}, default=str)) for g in gates]
    return dg.AssetCheckResult(
        check_name=spec.name,
        passed=all(g.passed for g in gates),
        severity=severity,
        metadata={
            "detail": "; ".join(g.message for g in gates),
            "gates": len(gates),
            "failed": sum(not g.passed for g in gates),
            "gate_metadata": dg.MetadataValue.json(details),
        },
    )
