"""The current runs as a list: the newest run of each key (the `current_runs` view), for the front
ends that walk every run (`sme2 regressions` without --run)."""

from __future__ import annotations


def current_run_ids(wh) -> list[str]:
    """Run ids of every current run, by variant and target."""
    return wh.query("SELECT run_id FROM current_runs ORDER BY variant, target").run_id.tolist()
