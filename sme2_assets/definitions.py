"""The code location: `dagster dev -w workspace.yaml` (or `dg dev`) loads `defs` from here."""

import dagster as dg

from sme2_assets import assets, jobs, schedules, sensors
from sme2_assets.resources import Sme2

defs = dg.Definitions(
    assets=assets.ALL,
    jobs=jobs.ALL,
    sensors=sensors.ALL,
    schedules=schedules.ALL,
    resources={"sme2": Sme2()},
)
