"""The run queue every launch goes through: Dagster's queued run coordinator (the limits of
dagster.yaml: one run per device, one per measuring CPU), which first gives each run the queue
tags those limits key on, from the partition it materializes.

Sensors and schedules tag their runs themselves; a run launched from the UI (Materialize, a
backfill, a re-execution) carries only Dagster's own partition tags. Without this, such a run
would skip the queue and could measure on a CPU another measurement holds. Tags a run already has
are kept."""

from __future__ import annotations

import contextlib

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Target
from kit.profile import config as experiment_config
from sme2_assets.partitions import build_tags, config_tags, local_tags, run_tags

TARGET_TAG = "dagster/partition/target"  # a model x target run's target dimension
PARTITION_TAG = "dagster/partition"


def queue_tags(tags: dict[str, str], root: DataRoot | None = None) -> dict[str, str]:
    """The queue tags of a run from its tags: a model x target partition measures on its target;
    a target partition builds its runner; a config partition runs its config's devices; anything
    else is CPU work on this machine."""
    if TARGET_TAG in tags:
        return run_tags(tags[TARGET_TAG], root)
    key = tags.get(PARTITION_TAG)
    if key:
        with contextlib.suppress(Sme2Error):
            return build_tags(Target.parse(key).key, root)
        with contextlib.suppress(Exception):  # an unreadable configs folder: local CPU work
            for found in experiment_config.discover((root or DataRoot.resolve()).configs):
                if found.name == key and found.config is not None:
                    return config_tags(found.config.devices, root)
    return local_tags()


class MeasurementQueue(QueuedRunCoordinator):
    """QueuedRunCoordinator that adds the missing queue tags before a run is queued."""

    def submit_run(self, context: SubmitRunContext):
        run = context.dagster_run
        missing = {k: v for k, v in queue_tags(dict(run.tags)).items() if k not in run.tags}
        if missing:
            self._instance.add_run_tags(run.run_id, missing)
            context = SubmitRunContext(run.with_tags({**run.tags, **missing}), context.workspace)
        return super().submit_run(context)
