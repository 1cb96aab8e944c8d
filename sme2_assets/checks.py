"""The validation gates as Dagster asset checks. The logic is in kit.validation and kit.regress;
each asset declares its specs from here and yields `result(...)`."""

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
    description="newest run vs the warehouse history of its key: Mann-Whitney U + BH on hardware (blocking for large end-to-end slowdowns); kernels and operator mix on emulated targets",
)
STATS_COMPLETE = dg.AssetCheckSpec(
    "stats_complete",
    asset="robust_stats",
    description="every operator has statistics over every iteration; end-to-end CV under the configured bound",
)
CATEGORIES_PARTITION = dg.AssetCheckSpec(
    "categories_partition",
    asset="category_breakdown",
    description="category totals sum to the operator total in every iteration",
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
    """One check result from kit gates (kit.validation.Gate or kit.regress.Finding)."""
    gates = list(gates)
    return dg.AssetCheckResult(
        check_name=spec.name,
        passed=all(g.passed for g in gates),
        severity=severity,
        metadata={"detail": "; ".join(g.message for g in gates) or "nothing to check"},
    )
