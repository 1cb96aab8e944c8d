"""What a killed earlier start left behind, repaired at the next start.

`kill -9` (or a power cut) of `sme2 profile`, `sme2 pipeline` or a Dagster step skips every
cleanup. Two things survive it: staging folders of half-written artifacts (runs/, exports/,
runners/; kit.atomic names them after their owner process so a dead owner is recognisable), and
run folders committed under runs/ whose warehouse insert never happened. `recover` removes the
first and ingests the second; profile.execute calls it before any new work. (The runner itself
dies with its parent: kit.lifetime.)"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from kit.core import atomic
from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import warehouse

log = logging.getLogger("sme2.recovery")


@dataclass
class Recovery:
    reclaimed: list[Path] = field(default_factory=list)  # staging / .old folders of dead owners
    recovered: list[str] = field(default_factory=list)  # run ids ingested into the warehouse now
    failed: dict[str, str] = field(default_factory=dict)  # run folder -> why it was not ingested
    deferred: str = ""  # why the warehouse step did not run (busy or unreadable warehouse)

    def lines(self) -> list[str]:
        out = []
        if self.reclaimed:
            out.append(
                f"removed {len(self.reclaimed)} staging folder(s) left by a killed earlier run: "
                + ", ".join(str(p) for p in self.reclaimed)
            )
        if self.recovered:
            out.append(
                f"ingested {len(self.recovered)} run folder(s) that an interrupted run had not written to the "
                f"warehouse: {', '.join(self.recovered)}"
            )
        for folder, why in self.failed.items():
            out.append(
                f"run folder {folder} is not in the warehouse and cannot be ingested: {why} "
                "(fix or delete the folder; `sme2 warehouse info` counts such folders)"
            )
        if self.deferred:
            out.append(f"recovery of un-ingested run folders deferred: {self.deferred}")
        return out


def recover(root: DataRoot, progress=None) -> Recovery:
    """Reclaim dead owners' staging folders under runs/, exports/, runners/, then ingest committed
    run folders the warehouse lacks. Every finding is logged (warning) and passed to `progress`."""

    say = progress or (lambda msg: None)
    result = Recovery()
    for parent in (root.runs, root.exports, root.runners):
        result.reclaimed += atomic.reclaim_stale(parent)
    try:
        done = warehouse.reconcile(root, say)
        result.recovered, result.failed = done.recovered, done.failed
    except WarehouseError as e:  # held by another process too long, or unreadable: the next start retries
        result.deferred = e.message
    for line in result.lines():
        log.warning(line)
        say(line)
    return result
