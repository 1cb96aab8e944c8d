"""Model x target assets: the device trace (timing + ETDump runs), its warehouse rows, and the
per-run views (robust statistics, category breakdown, kernel view). The trace comes from
kit.pipeline; the views and their checks read the same warehouse rows (kit.store.views), labelled
with the category rules the runs were stored with; none re-parses an ETDump or holds analysis logic."""

import base64

import dagster as dg
import pandas as pd

from kit.analysis import regress, validation
from kit.export import artifact
from kit.pipeline import profile_partition, store_runs
from kit.profile import runsummary
from kit.report import charts
from kit.store import views
from kit.store.warehouse import Warehouse
from sme2_assets import checks
from sme2_assets.assets.models import exported_program
from sme2_assets.assets.runners import runner_binary
from sme2_assets.metadata import number, numbers, slug, table
from sme2_assets.partitions import MODEL_TARGET, ON_MODEL, ON_TARGET, TARGET, keys
from sme2_assets.resources import Sme2


def _per_run(runs: pd.DataFrame, values) -> dict:
    """Numeric metadata per run, one key per metric: `<name>` when the partition measures one thread
    count, `<name>_t<threads>` per thread count when it measures several (stable keys, so the Plots
    tab draws each across materializations)."""
    out = {}
    several = runs.threads.nunique() > 1
    for r in runs.sort_values("threads").itertuples():
        for name, value in values(r).items():
            out[f"{name}_t{r.threads}" if several else name] = number(value)
    return numbers(out)


# The run summary's entries the `runs` table of device_trace shows (kit.profile.runsummary); counted
# (emulated) runs fill instructions and est_cycles, Method::execute's.
RUN_COLUMNS = ["run_id", "threads", "size", "e2e_median_ms", "e2e_cv_percent", "emulated", "instructions", "est_cycles"]


def _run_row(r) -> dict:
    s = runsummary.summarize(r)
    window = " - ".join(
        pd.Timestamp(t, unit="s").strftime("%H:%M:%S.%f")[:-3]
        for t in r.record.conditions.get("measurement_window", [])
    )
    return {**{k: s[k] for k in RUN_COLUMNS}, "measurement_window": window}


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
    settings = sme2.settings()
    root = settings.root()
    part = profile_partition(
        root,
        variant,
        target,
        settings,
        known_targets=list(context.instance.get_dynamic_partitions(TARGET.name)),
        progress=context.log.info,
    )
    results = part.results
    gates = [validation.etdump(r.trace.rows, artifact.load(r.run_dir).meta["delegate_partitions"]) for r in results]
    rows = pd.DataFrame([_run_row(r) for r in results], columns=RUN_COLUMNS + ["measurement_window"])
    yield dg.Output(
        {"run_dirs": [str(r.run_dir) for r in results]},
        metadata={
            "runs": table(rows),
            "run_dirs": dg.MetadataValue.json([str(r.run_dir) for r in results]),
            "emulated": results[0].record.emulated if results else False,
            "measurement": part.note,
            "adopted": part.adopted,
            "pair_session": part.pair_session or "",
            **(_per_run(rows, lambda r: {"e2e_median_ms": r.e2e_median_ms}) if len(rows) else {}),
            **(
                _per_run(rows, lambda r: {"instructions": r.instructions, "est_cycles": r.est_cycles})
                if len(rows) and rows.instructions.notna().all()
                else {}
            ),
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
    settings = sme2.settings()
    root = settings.root()
    ids = store_runs(root, device_trace["run_dirs"], settings)
    wh = Warehouse.at(root)
    runs = views.runs(wh, ids)
    findings = [regress.check_run(wh, run_id, block_ratio=settings.regression_block_ratio) for run_id in ids]
    yield dg.Output(
        {"run_ids": ids},
        metadata={
            "runs": len(ids),
            "latency_samples": int(runs.n_samples.sum()),
            "op_events": int(runs.n_op_events.sum()),
            "warehouse": dg.MetadataValue.path(str(wh.path)),
        },
    )
    blocking = any(f.blocking for f in findings)
    yield checks.result(
        checks.NO_REGRESSION, findings, dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN
    )


@dg.asset(
    partitions_def=MODEL_TARGET,
    group_name="profiling",
    description="Robust statistics per operator and end to end (Arm-kit compatible *_robust_stats.json).",
    check_specs=[checks.STATS_COMPLETE],
)
def robust_stats(context: dg.AssetExecutionContext, sme2: Sme2, warehouse_rows: dict):
    settings = sme2.settings()
    wh = Warehouse.at(settings.root())
    ids = warehouse_rows["run_ids"]
    runs, ops = views.runs(wh, ids), views.op_stats(wh, ids)
    gates = [
        validation.stats(ops[ops.run_id == r.run_id], r.e2e_cv_percent, int(r.iterations), settings.cv_bound_percent)
        for r in runs.itertuples()
    ]
    files = list(views.artifacts(wh, ids, "robust_stats").path)
    e2e = runs[
        ["threads", "e2e_median_ms", "e2e_p10_ms", "e2e_p90_ms", "e2e_cv_percent", "e2e_ci_low_ms", "e2e_ci_high_ms"]
    ]
    top = ops[
        ["threads", "op_type", "category", "instances", "median_ms", "p10_ms", "p90_ms", "cv_percent", "kernel_hint"]
    ]
    yield dg.Output(
        warehouse_rows,
        metadata={
            "end_to_end": table(e2e),
            "top_operators": table(top.groupby("threads").head(10)),
            "robust_stats_json": dg.MetadataValue.json(files),
            "operators": int(ops.op_type.nunique()),
            **_per_run(
                runs,
                lambda r: {
                    "e2e_median_ms": r.e2e_median_ms,
                    "e2e_p10_ms": r.e2e_p10_ms,
                    "e2e_p90_ms": r.e2e_p90_ms,
                    "e2e_cv_percent": r.e2e_cv_percent,
                    "execute_median_ms": r.execute_median_ms,
                    "coverage": r.coverage,
                },
            ),
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
    wh = Warehouse.at(root)
    ids = warehouse_rows["run_ids"]
    runs, cats = views.runs(wh, ids), views.category_stats(wh, ids)
    sums, totals = views.iteration_category_sums(wh, ids), views.iteration_operator_totals(wh, ids)
    gates = [
        validation.categories(sums[sums.run_id == rid], totals[totals.run_id == rid], cats[cats.run_id == rid])
        for rid in runs.run_id
    ]
    blog = cats[cats.scheme == "blog"]
    variant, target = keys(context)
    png = root.report_path(variant, f"{target}-categories.png")
    chart_df = blog.assign(label=[f"{target} t{t}" for t in blog.threads])
    charts.save_png(
        charts.category_bars(chart_df, f"{variant} on {target}" + (" (emulated)" if runs.emulated.any() else "")), png
    )
    image = base64.b64encode(png.read_bytes()).decode()
    shown = ["threads", "category", "median_ms", "share_of_execute", "ops"]

    def per_category(r) -> dict:
        mine = blog[blog.run_id == r.run_id]
        return {f"share_{slug(c.category)}": c.share_of_execute for c in mine.itertuples()} | {
            f"{slug(c.category)}_ms": c.median_ms for c in mine.itertuples()
        }

    yield dg.Output(
        warehouse_rows,
        metadata={
            "categories": table(blog[shown]),
            "fine_categories": table(cats[cats.scheme == "fine"][shown]),
            "chart": dg.MetadataValue.md(f"![categories](data:image/png;base64,{image})"),
            "chart_png": dg.MetadataValue.path(str(png)),
            **_per_run(runs, per_category),
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
    wh = Warehouse.at(sme2.root())
    ids = warehouse_rows["run_ids"]
    runs, ops, kern = views.runs(wh, ids), views.op_stats(wh, ids), views.kernels(wh, ids)
    gates = [validation.sme2_kernels(ops[ops.run_id == r.run_id], bool(r.sme2), r.dtype) for r in runs.itertuples()]

    def sme2_share(r) -> dict:
        mine = kern[kern.run_id == r.run_id]
        total = mine.median_ms.sum()
        sme2_ms = mine[mine.kernel_family == "kleidiai-sme2"].median_ms.sum()
        return {
            "sme2_kernel_op_types": int((mine.kernel_family == "kleidiai-sme2").sum()),
            "share_sme2_kernels": sme2_ms / total if total > 0 else None,
        }

    yield dg.Output(
        warehouse_rows,
        metadata={
            "kernels": table(kern[["threads", "op_type", "kernel_family", "dtype_tags", "median_ms"]]),
            "families": dg.MetadataValue.json(kern.groupby("kernel_family").size().to_dict()),
            **_per_run(runs, sme2_share),
        },
    )
    yield checks.result(checks.SME2_KERNELS, gates)
