"""A snapshot of the Dagster definitions (as Dagster Open Platform keeps one): asset keys, their
dependencies, partitioning, groups and checks; jobs and their selections; schedules with cron and
default status; sensors with their jobs and default status. A change to the graph shows up here as
a diff to review; regenerate with SME2_UPDATE_SNAPSHOT=1 after an intended change. Fast: loading
the definitions only, nothing runs."""

import json
import os
from pathlib import Path

import dagster as dg

SNAPSHOT = Path(__file__).parent / "data" / "definitions.json"


def _partitions(pd) -> str | None:
    if pd is None:
        return None
    if isinstance(pd, dg.MultiPartitionsDefinition):
        return "x".join(f"{d.name}:{_partitions(d.partitions_def)}" for d in pd.partitions_defs)
    name = getattr(pd, "name", None)
    return f"{type(pd).__name__}({name})" if name else type(pd).__name__


def snapshot() -> dict:
    from sme2_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "group": node.group_name,
            "checks": sorted(c.name for c in node.check_keys),
        }
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        jobs[job.name] = sorted(
            k.to_user_string()
            for k in job.asset_layer.selected_asset_keys  # what the job materializes
        )
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "default": s.default_status.value}
        for s in sorted(defs.schedules or [], key=lambda s: s.name)
    }
    sensors = {
        s.name: {"jobs": sorted(j.name for j in s.jobs) if s.has_jobs else [], "default": s.default_status.value}
        for s in sorted(defs.sensors or [], key=lambda s: s.name)
    }
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


def test_the_definitions_match_their_snapshot():
    now = snapshot()
    if os.environ.get("SME2_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    assert now == json.loads(SNAPSHOT.read_text()), (
        "the Dagster definitions changed: review the difference, then SME2_UPDATE_SNAPSHOT=1 python -m pytest "
        "tests/test_definitions_snapshot.py to accept it"
    )
    # What the rest of the product relies on, whatever the snapshot says.
    assert set(now["schedules"]) >= {"nightly_profile", "nightly_configs", "nightly_lake_maintenance"}
    assert all(s["default"] == "STOPPED" for s in now["schedules"].values())  # opening the UI starts nothing
    assert now["jobs"]["maintain_lake"] == ["lake_maintenance"]
