"""Run folders into the warehouse: one run as it finishes (`ingest_run`), the folders a killed
process left without rows (`reconcile`, at every start), and batches (`sme2 warehouse ingest`,
`rebuild`: `ingest_folders`), where one bad folder is reported and skipped, never fatal. Which
folders to read and what to say about them is this module's job; reading one is
kit.store.runrows's, writing its rows the Warehouse's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from kit.core.errors import Sme2Error, WarehouseError
from kit.core.home import DataRoot
from kit.profile.runrecord import RUN_FILE, RunRecord
from kit.stats import categories
from kit.store.runrows import RunRows, rows_from_run
from kit.store.warehouse import Warehouse


def ingest_run(root: DataRoot, run_dir: Path, rules=None) -> bool:
    """Put a run folder into the warehouse (no-op if already there), then, in a lab, publish it to
    the shared store (no-op if already there): the local commit comes first, so a host that dies
    in between publishes the run at its next start (recovery) or with `sme2 warehouse publish`."""

    wh = Warehouse.at(root)
    run_id = RunRecord.load(run_dir).run_id
    added = False
    if not wh.has_run(run_id):
        added = wh.insert_run(rows_from_run(run_dir, rules or categories.load_rules(root.user_categories)))
    wh.publish([run_id])
    return added


# ---------------------------------------------------------------- folders the warehouse lacks


def run_folders(root: DataRoot) -> list[Path]:
    """Committed run folders under runs/ (staging and `.old` folders start with a dot)."""

    return sorted(p for p in root.runs.iterdir() if not p.name.startswith(".") and (p / RUN_FILE).is_file())


def stored_run_names(root: DataRoot) -> set[str]:
    """Run ids in the warehouse, and the folder names they were read from."""
    if not root.warehouse.exists():
        return set()
    with Warehouse.at(root).read(local=True) as conn:
        try:
            rows = conn.execute("SELECT run_id, run_dir FROM runs").fetchall()
        except duckdb.CatalogException:  # created but never migrated
            return set()
    return {run_id for run_id, _ in rows} | {Path(run_dir).name for _, run_dir in rows if run_dir}


def missing_runs(root: DataRoot) -> list[Path]:
    """Run folders with no rows in the warehouse."""
    stored = stored_run_names(root)
    return [d for d in run_folders(root) if d.name not in stored]


@dataclass
class Reconciled:
    recovered: list[str]  # run ids ingested now
    failed: dict[str, str]  # run folder -> why it could not be ingested


def reconcile(root: DataRoot, progress=None) -> Reconciled:
    """Ingest the run folders the warehouse lacks. A process killed after a run folder's rename and
    before its warehouse insert leaves exactly that; the files are the source of truth, so the next
    start completes the insert. Only the missing folders are read (this runs at every start), with
    rebuild's rules: a folder that cannot be ingested is reported with the reason, never raised (one
    bad folder must not stop profiling); a busy, broken or full warehouse is raised."""
    missing = missing_runs(root)
    if not missing:
        return Reconciled([], {})
    say = progress or (lambda msg: None)
    say(f"{len(missing)} run folder(s) are not in the warehouse (an earlier run was interrupted): ingesting")
    done = rebuild(root, say, folders=missing)
    failed = dict(done.bad)
    for name in done.present:  # its run.json names a run id the warehouse has, read from another folder
        failed[str(root.run_path(name))] = "its run id is already in the warehouse from another folder (a copy?)"
    return Reconciled(done.added, failed)


# ---------------------------------------------------------------- rebuild from the run folders


@dataclass
class Rebuilt:
    added: list[str]  # run ids ingested now
    present: list[str]  # run folders whose run was already in the warehouse
    bad: dict[str, str]  # run folder -> why it was skipped


def rebuild_candidates(root: DataRoot) -> list[Path]:
    """Every folder under runs/ that should be a run (staging and `.old` folders start with a dot)."""
    if not root.runs.is_dir():
        return []
    return sorted(p for p in root.runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def rebuild(root: DataRoot, progress=None, advance=None, folders: list[Path] | None = None) -> Rebuilt:
    """`sme2 warehouse rebuild`: ingest every run folder the warehouse lacks (the files are the
    source of truth). `folders`: only these (default: every candidate)."""
    return ingest_folders(root, rebuild_candidates(root) if folders is None else folders, progress, advance)


def expand_run_folders(paths: list[Path]) -> list[Path]:
    """`sme2 warehouse ingest DIR...`: each DIR is a run folder, or a folder of run folders (such
    as a data root's runs/; staging and `.old` folders, which start with a dot, are left out)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / RUN_FILE).is_file() or not p.is_dir():
            out.append(p)
        else:
            out.extend(sorted(c for c in p.iterdir() if c.is_dir() and not c.name.startswith(".")))
    return out


def ingest_folders(root: DataRoot, folders: list[Path], progress=None, advance=None) -> Rebuilt:
    """Batch ingestion of run folders: one connection, one transaction per run (insert_each), each
    folder read while the previous run is written. One bad folder (corrupt run.json, truncated
    ETDump, ...) must not stop the others: it is skipped and reported with the reason. A busy,
    broken or full warehouse is raised, since every folder would fail the same way."""
    say, step = progress or (lambda msg: None), advance or (lambda: None)
    wh = Warehouse.at(root)
    wh.ensure()
    rules = categories.load_rules(root.user_categories)
    stored = stored_run_names(root)
    out = Rebuilt([], [], {})
    folder_of: dict[str, str] = {}

    def readable():
        for folder in folders:
            folder = Path(folder)
            say(folder.name)
            try:
                if not (folder / RUN_FILE).is_file():
                    out.bad[str(folder)] = f"no {RUN_FILE}: not a run folder, or its run never finished"
                elif (run_id := RunRecord.load(folder).run_id) in stored:
                    out.present.append(folder.name)
                else:
                    rows = rows_from_run(folder, rules)
                    folder_of[run_id] = folder.name
                    yield rows
                    continue  # stepped once written
            except WarehouseError:
                raise
            except Sme2Error as e:
                out.bad[str(folder)] = e.message
            except Exception as e:  # a folder no validator anticipated: report it, keep going
                out.bad[str(folder)] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            step()

    def written(rows: RunRows, added: bool) -> None:
        name = folder_of[rows.run["run_id"]]
        (out.added if added else out.present).append(name)
        step()

    wh.insert_each(readable(), on_run=written)
    wh.publish()  # a lab: what this file has and the shared store lacks (nothing without a store)
    return out
