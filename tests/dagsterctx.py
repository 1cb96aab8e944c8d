"""Evaluating sensors and schedules as Dagster's daemon does: inside the context manager that opens
their resources (the `sme2` resource sets its environment overrides for the evaluation and puts
the previous values back after it, so Dagster treats it as a generator resource)."""

from __future__ import annotations

import dagster as dg


def sensor_result(sensor, **context):
    with dg.build_sensor_context(**context) as ctx:
        return sensor(ctx)


def schedule_requests(schedule, **context) -> list:
    with dg.build_schedule_context(**context) as ctx:
        return list(schedule.evaluate_tick(ctx).run_requests)
