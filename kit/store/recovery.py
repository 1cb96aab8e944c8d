"""What a killed earlier start left behind, repaired at the next start.

`kill -9` (or a power cut) of `sme2 profile`, `sme2 pipeline` or a Dagster step skips every
cleanup. Two things survive it: staging folders of half-written artifacts (runs/, exports/,
runners/; kit.core.atomic names them after their owner process so a dead owner is recognisable), and
run folders committed under runs/ whose warehouse insert never happened (and, in a lab, runs
committed locally but not yet published to the shared store). `recover` removes the first,
ingests the second and publishes the third; profile.execute calls it before any new work. (The runner itself
dies with its parent: kit.core.lifetime.)"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from kit.core import atomic
from kit.core.errors import Sme2Error, WarehouseError
from kit.core.home import DataRoot
from kit.profile.runrecord import RunRecord
from kit.store import ingest, warehouse

log = logging.getLogger("sme2.recovery")


@dataclass
class Recovery:
    reclaimed: list[Path] = field(default_factory=list)  # staging / .old folders of dead owners
    recovered: list[str] = field(default_factory=list)  # run ids ingested into the warehouse now
    paired: list[str] = field(default_factory=list)  # of those: a pair session's runs left for the sibling
    failed: dict[str, str] = field(default_factory=dict)  # run folder -> why it was not ingested
    deferred: str = ""  # why the warehouse step did not run (busy or unreadable warehouse)
    published: list[str] = field(default_factory=list)  # run ids added to the lab's shared store now

    def lines(self) -> list[str]:
        out = []
        if self.reclaimed:
            out.append(
                f"removed {len(self.reclaimed)} staging folder(s) left by a killed earlier run: "
                + ", ".join(str(p) for p in self.reclaimed)
            )
        interrupted = [r for r in self.recovered if r not in self.paired]
        if interrupted:
            out.append(
                f"ingested {len(interrupted)} run folder(s) that an interrupted run had not written to the "
                f"warehouse: {', '.join(interrupted)}"
            )
        for folder, why in self.failed.items():
            out.append(
                f"run folder {folder} is not in the warehouse and cannot be ingested: {why} "
                "(fix or delete the folder; `sme2 warehouse info` counts such folders)"
            )
        if self.published:
            out.append(
                f"published {len(self.published)} run(s) that an interrupted run had not written to the shared "
                f"store: {', '.join(self.published)}"
            )
        if self.deferred:
            out.append(f"recovery of un-ingested run folders deferred: {self.deferred}")
        return out


def _pair_session(run_dir: Path) -> bool:
    try:
        return bool(RunRecord.load(run_dir).conditions.get("pair_session"))
    except Sme2Error:
        return False


def recover(root: DataRoot, progress=None) -> Recovery:
    """Reclaim dead owners' staging folders under runs/, exports/, runners/, then ingest committed
    run folders the warehouse lacks. Every finding is logged (warning) and passed to `progress`."""

    say = progress or (lambda msg: None)
    result = Recovery()
    for parent in (root.runs, root.exports, root.runners):
        result.reclaimed += atomic.reclaim_stale(parent)
    try:
        done = ingest.reconcile(root, say)
        result.recovered, result.failed = done.recovered, done.failed
        result.published = warehouse.Warehouse.at(root).publish()
    except WarehouseError as e:  # held by another process too long, or unreadable: the next start retries
        result.deferred = e.message
    # The sibling target's runs of an SME2 on/off pair session wait in runs/ without warehouse rows
    # until their partition adopts them: storing them early is routine, not a repair.
    result.paired = [r for r in result.recovered if _pair_session(root.run_path(r))]
    if result.paired:
        note = (
            f"stored {len(result.paired)} run folder(s) of an SME2 on/off pair session (left for the sibling "
            f"target's partition, or by an interrupted run): {', '.join(result.paired)}"
        )
        log.info(note)
        say(note)
    for line in result.lines():
        log.warning(line)
        say(line)
    return result
