from sme2_assets.assets.configs import config_experiments
from sme2_assets.assets.lake import lake_maintenance
from sme2_assets.assets.models import exported_program, model_source
from sme2_assets.assets.profiling import category_breakdown, device_trace, kernel_view, robust_stats, warehouse_rows
from sme2_assets.assets.reports import report, sme2_comparison
from sme2_assets.assets.runners import runner_binary

ALL = [
    model_source,
    exported_program,
    runner_binary,
    device_trace,
    warehouse_rows,
    robust_stats,
    category_breakdown,
    kernel_view,
    sme2_comparison,
    report,
    config_experiments,
    lake_maintenance,
]
