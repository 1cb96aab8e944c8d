"""The code location: `dagster dev -w workspace.yaml` (or `dg dev`) loads `defs` from here.

With $SME2_CELERY_BROKER set (a device lab, docs/deployment.md) every job runs on dagster-celery
workers, each step on the queue of its device's lab host (sme2_assets.lab)."""

import dagster as dg

from sme2_assets import assets, jobs, lab, schedules, sensors
from sme2_assets.resources import Sme2

_io = lab.io_manager() if lab.enabled() else None

defs = dg.Definitions(
    assets=assets.ALL,
    jobs=jobs.ALL,
    sensors=sensors.ALL,
    schedules=schedules.ALL,
    resources={"sme2": Sme2(), **({"io_manager": _io} if _io is not None else {})},
    executor=lab.executor_def() if lab.enabled() else None,
)
