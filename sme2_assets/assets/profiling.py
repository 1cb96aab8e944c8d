"""Model x target assets: the device trace (timing + ETDump runs), its warehouse rows, and the
per-run views (robust statistics, category breakdown, kernel view). Each reads the run folders or
the warehouse through kit; none holds analysis logic."""

import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from kit.analysis import regress, validation
from kit.core.names import Variant
from kit.export import exporter
from kit.pipeline import profile_partition, store_runs
from kit.profile import session
from kit.report import charts
from kit.store.warehouse import Warehouse
from sme2_assets import checks
from sme2_assets.assets.models import exported_program
from sme2_assets.assets.runners import runner_binary
from sme2_assets.partitions import MODEL_TARGET, ON_MODEL, ON_TARGET, keys
from sme2_assets.resources import Sme2


def _md(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if not df.empty else "_no rows_"


@dg.asset(
    partitions_def=MODEL_TARGET,
    deps=[
        dg.AssetDep(exported_program, partition_mapping=ON_MODEL),
        dg.AssetDep(runner_binary, partition_mapping=ON_TARGET),
    ],
    group_name="profiling",
    description="A timing-only run and an ETDump run per thread count on the target (run folders under runs/).",
    check_specs=[checks.ETDUMP_VALID],
)
def device_trace(context: dg.AssetExecutionContext, sme2: Sme2):
    variant, target = keys(context)
    results = profile_partition(sme2.root(), variant, target, sme2.settings(), progress=context.log.info)
    root = sme2.root()
    gates = [
        validation.etdump(
            r.trace.rows, exporter.find(root, Variant.parse(variant), r.record.size).meta["delegate_partitions"]
        )
        for r in results
    ]
    rows = pd.DataFrame(
        [
            {
                "run_id": r.record.run_id,
                "threads": r.record.threads,
                "size": r.record.size,
                "e2e median ms": r.analysis.e2e["median_ms"],
                "emulated": r.record.emulated,
            }
            for r in results
        ]
    )
    yield dg.Output(
        {"run_dirs": [str(r.run_dir) for r in results]},
        metadata={
            "runs": dg.MetadataValue.md(_md(rows)),
            "run_dirs": dg.MetadataValue.json([str(r.run_dir) for r in results]),
            "emulated": results[0].record.emulated if results else False,
        },
    )
    yield checks.result(checks.ETDUMP_VALID, gates)


@dg.asset(
    partitions_def=MODEL_TARGET,
    group_name="profiling",
    description="Latency samples, per-iteration operator events and aggregates of the runs, in the DuckDB warehouse (one transaction per run).",
    check_specs=[checks.NO_REGRESSION],
)
def warehouse_rows(context: dg.AssetExecutionContext, sme2: Sme2, device_trace: dict):
    root = sme2.root()
    ids = store_runs(root, device_trace["run_dirs"])
    wh = Warehouse.at(root)
    counts = wh.query(
        "SELECT run_id, n_samples, n_op_events, n_op_stats FROM runs WHERE list_contains(?, run_id)", [ids]
    )
    findings = [regress.check_run(wh, run_id, block_ratio=sme2.regression_block_ratio) for run_id in ids]
    yield dg.Output(
        {"run_ids": ids},
        metadata={
            "runs": len(ids),
            "latency_samples": int(counts.n_samples.sum()),
            "op_events": int(counts.n_op_events.sum()),
            "warehouse": dg.MetadataValue.path(str(wh.path)),
        },
    )
    blocking = any(f.blocking for f in findings)
    yield checks.result(
        checks.NO_REGRESSION, findings, dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    )


def _load(run_ids: list[str], root):
    wh = Warehouse.at(root)
    runs = wh.query(
        "SELECT run_id, run_dir, target, threads, sme2, dtype, emulated, iterations FROM runs WHERE list_contains(?, run_id) ORDER BY threads",
        [run_ids],
    )
    return wh, runs


@dg.asset(
    partitions_def=MODEL_TARGET,
    group_name="profiling",
    description="Robust statistics per operator and end to end (Arm-kit compatible *_robust_stats.json).",
    check_specs=[checks.STATS_COMPLETE],
)
def robust_stats(context: dg.AssetExecutionContext, sme2: Sme2, warehouse_rows: dict):
    wh, runs = _load(warehouse_rows["run_ids"], sme2.root())
    top = wh.query(
        "SELECT r.threads, s.op_type, s.category, s.instances, s.median_ms, s.p10_ms, s.p90_ms, s.cv_percent, s.kernel_hint FROM op_stats s JOIN runs r USING (run_id) WHERE list_contains(?, run_id) ORDER BY r.threads, s.median_ms DESC",
        [warehouse_rows["run_ids"]],
    )
    gates, files = [], []
    for r in runs.itertuples():
        loaded = session.load_run(Path(r.run_dir))
        gates.append(
            validation.stats(
                loaded.analysis.op_stats, loaded.analysis.e2e, loaded.record.iterations, sme2.cv_bound_percent
            )
        )
        files += [str(p) for p in Path(r.run_dir).glob("*_robust_stats.json")]
    e2e = wh.query(
        "SELECT threads, e2e_median_ms, e2e_p10_ms, e2e_p90_ms, e2e_cv_percent, e2e_ci_low_ms, e2e_ci_high_ms FROM runs WHERE list_contains(?, run_id)",
        [warehouse_rows["run_ids"]],
    )
    yield dg.Output(
        warehouse_rows,
        metadata={
            "end_to_end": dg.MetadataValue.md(_md(e2e)),
            "top_operators": dg.MetadataValue.md(_md(top.groupby("threads").head(10))),
            "robust_stats_json": dg.MetadataValue.json(files),
        },
    )
    yield checks.result(checks.STATS_COMPLETE, gates, dg.AssetCheckSeverity.WARN)


@dg.asset(
    partitions_def=MODEL_TARGET,
    group_name="profiling",
    description="Category totals (Convolution, GEMM, Data Movement, Elementwise, Other; and the fine scheme) and their share of Method::execute.",
    check_specs=[checks.CATEGORIES_PARTITION],
)
def category_breakdown(context: dg.AssetExecutionContext, sme2: Sme2, warehouse_rows: dict):
    root = sme2.root()
    wh, runs = _load(warehouse_rows["run_ids"], root)
    cats = wh.query(
        "SELECT r.threads, c.category, c.median_ms, c.share_of_execute, c.ops FROM category_stats c JOIN runs r USING (run_id) WHERE c.scheme = 'blog' AND list_contains(?, run_id) ORDER BY r.threads",
        [warehouse_rows["run_ids"]],
    )
    gates = [validation.categories(session.load_run(Path(r.run_dir)).analysis.per_iteration) for r in runs.itertuples()]
    variant, target = keys(context)
    png = root.reports / variant / f"{target}-categories.png"
    chart_df = cats.assign(label=[f"{target} t{t}" for t in cats.threads])
    charts.save_png(
        charts.category_bars(chart_df, f"{variant} on {target}" + (" (emulated)" if runs.emulated.any() else "")), png
    )
    image = base64.b64encode(png.read_bytes()).decode()
    yield dg.Output(
        warehouse_rows,
        metadata={
            "categories": dg.MetadataValue.md(_md(cats)),
            "chart": dg.MetadataValue.md(f"![categories](data:image/png;base64,{image})"),
            "chart_png": dg.MetadataValue.path(str(png)),
        },
    )
    yield checks.result(checks.CATEGORIES_PARTITION, gates)


@dg.asset(
    partitions_def=MODEL_TARGET,
    group_name="profiling",
    description="Per operator, the kernel family its name reveals (KleidiAI SME2 packed types vs plain XNNPACK vs portable).",
    check_specs=[checks.SME2_KERNELS],
)
def kernel_view(context: dg.AssetExecutionContext, sme2: Sme2, warehouse_rows: dict):
    wh, runs = _load(warehouse_rows["run_ids"], sme2.root())
    table = wh.query(
        "SELECT r.threads, k.op_type, k.kernel_family, k.dtype_tags, s.median_ms FROM kernels k JOIN op_stats s USING (run_id, op_type) JOIN runs r USING (run_id) WHERE list_contains(?, run_id) ORDER BY r.threads, s.median_ms DESC",
        [warehouse_rows["run_ids"]],
    )
    gates = []
    for r in runs.itertuples():
        stats_ = wh.query("SELECT op_type FROM op_stats WHERE run_id = ?", [r.run_id])
        gates.append(validation.sme2_kernels(stats_, bool(r.sme2), r.dtype))
    yield dg.Output(
        warehouse_rows,
        metadata={
            "kernels": dg.MetadataValue.md(_md(table)),
            "families": dg.MetadataValue.json(table.groupby("kernel_family").size().to_dict()),
        },
    )
    yield checks.result(checks.SME2_KERNELS, gates)
