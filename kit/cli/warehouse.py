"""`sme2 sql`, `sme2 query` and `sme2 warehouse ...`: SQL and named queries over the warehouse, and its upkeep."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from kit.cli.common import (
    FormatOpt,
    HomeOpt,
    JsonOpt,
    command,
    console,
    emit_json,
    err,
    print_frame,
    progress,
    root_of,
)
from kit.core.errors import Sme2Error
from kit.store import contents, ingest, migration, queries
from kit.store.shared import SharedStore
from kit.store.warehouse import Warehouse

app = typer.Typer()


@app.command("sql")
@command
def sql_cmd(
    query: str = typer.Argument(
        ...,
        help="A SELECT over runs, latency_samples, op_events, op_instances, op_stats, category_stats, kernels, "
        "artifacts, regressions, op_counts, op_event_counts, current_runs.",
    ),
    fmt: str = FormatOpt,
    as_json: bool = JsonOpt,
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds before the query is stopped."),
    max_rows: int = typer.Option(10_000, "--max-rows", min=1, help="At most this many rows are printed."),
    at: Optional[str] = typer.Option(
        None, "--at", help="A lab: read the DuckLake as of this snapshot (sme2 warehouse history) or time (2026-12-01)."
    ),
    home: Optional[Path] = HomeOpt,
):
    """Run one read-only SELECT (or EXPLAIN of one) over the warehouse. It cannot read or write
    files, attach databases, load extensions or change settings (docs/orchestration.md, Security);
    it stops at its time limit, at Ctrl-C, and returns at most --max-rows rows."""

    root = root_of(home)
    df = Warehouse.at(root, at).sql(query, timeout_s=timeout, max_rows=max_rows)  # kit.store.usersql (+ a lab's lake)
    cut = len(df) > max_rows
    print_frame(df.head(max_rows), "json" if as_json else fmt)
    if cut:
        err.print(f"[yellow]more than {max_rows} rows: only the first {max_rows} are shown (--max-rows)[/]")


@app.command("query")
@command
def query_cmd(
    name: Optional[str] = typer.Argument(None, help="Named query (see --list)."),
    param: list[str] = typer.Option([], "--param", "-p", help="key=value, repeatable."),
    list_: bool = typer.Option(False, "--list", help="List the named queries and their parameters."),
    fmt: str = FormatOpt,
    as_json: bool = JsonOpt,
    home: Optional[Path] = HomeOpt,
):
    """Run one of the everyday questions (sme2 query --list): latest-ops, op-history, category-shares,
    biggest-changes, module-totals, runs."""

    if list_ or not name:
        for q in queries.QUERIES.values():
            console.print(
                f"[bold]{q.name}[/]  {q.description}\n    params: {', '.join(f'{k}={v!r}' if v else k for k, v in q.params.items())}"
            )
        return
    params = {}
    for p in param:
        k, sep, v = p.partition("=")
        if not sep:
            raise Sme2Error(f"--param {p!r} is not key=value", "e.g. --param variant=tiny_seg-fp32")
        params[k.strip()] = v.strip()
    print_frame(queries.run(Warehouse.at(root_of(home)), name, params), "json" if as_json else fmt, title=name)


warehouse_app = typer.Typer(
    help="Warehouse maintenance: info, batch ingestion and rebuild from run folders, publishing to a lab's shared store, retention.",
    no_args_is_help=True,
)


@warehouse_app.command("info")
@command
def warehouse_info(home: Optional[Path] = HomeOpt, as_json: bool = JsonOpt):
    """Row counts per table, the schema version, and run folders not (yet) in the warehouse."""

    root = root_of(home)
    wh = Warehouse.at(root)
    wh.ensure()
    counts, version = contents.row_counts(wh)
    # Left by a run killed between its folder's rename and its insert (or a folder that fails to ingest).
    missing = [d.name for d in ingest.missing_runs(root)]
    info = {
        "path": str(wh.path),
        "schema_version": version,
        "rows": counts,
        "runs_not_in_warehouse": len(missing),
        "run_folders_not_in_warehouse": missing,
    }
    if wh.shared is not None:  # a lab: the shared store, and this file's runs it lacks
        local = contents.local_run_ids(wh)
        stored = wh.shared.run_ids()
        info["shared_store"] = {
            "path": str(wh.shared.path),
            "lake": wh.shared.describe(),
            "snapshot": wh.shared.snapshot(),
            "runs": len(stored),
            "local_runs_not_published": sorted(local - stored),
        }
    if as_json:
        emit_json(info)
    else:
        console.print(f"{wh.path} (schema v{version})")
        for t, n in counts.items():
            console.print(f"  {t:16s} {n:>12,}")
        if missing:
            console.print(
                f"[yellow]{len(missing)} run folder(s) under {escape(str(root.runs))} are not in the warehouse[/]: "
                f"{escape(', '.join(missing[:5]))}{' ...' if len(missing) > 5 else ''}\n"
                "  -> the next `sme2 profile` ingests them, or run `sme2 warehouse rebuild` now"
            )
        if "shared_store" in info:
            shared = info["shared_store"]
            console.print(
                f"lab DuckLake {escape(shared['lake'])}: {shared['runs']:,} runs, snapshot {shared['snapshot']} "
                "(counts above: this host's file)"
            )
            if shared["local_runs_not_published"]:
                console.print(
                    f"[yellow]{len(shared['local_runs_not_published'])} run(s) of this host are not in the shared"
                    " store[/]\n  -> the next `sme2 profile` publishes them, or run `sme2 warehouse publish` now"
                )


@warehouse_app.command("rebuild")
@command
def warehouse_rebuild(home: Optional[Path] = HomeOpt):
    """Ingest every run folder not yet in the warehouse (the files are the source of truth).
    Bad folders are skipped and listed with the reason at the end (exit status 1)."""

    root = root_of(home)
    with progress(len(ingest.rebuild_candidates(root)), False) as (say, advance):
        result = ingest.rebuild(root, say, advance)
    _report_ingested(result, "sme2 warehouse rebuild")


@warehouse_app.command("ingest")
@command
def warehouse_ingest(
    folders: list[Path] = typer.Argument(..., help="Run folders, or folders of run folders (e.g. .sme2/runs)."),
    home: Optional[Path] = HomeOpt,
):
    """Batch-ingest run folders (from this data root or copied from another machine): one
    connection, one transaction per run, already-stored runs skipped. Bad folders are listed
    with the reason at the end (exit status 1)."""

    root = root_of(home)
    todo = ingest.expand_run_folders(folders)
    with progress(len(todo), False) as (say, advance):
        result = ingest.ingest_folders(root, todo, say, advance)
    _report_ingested(result, "sme2 warehouse ingest")


def _report_ingested(result, command_line: str) -> None:
    console.print(f"{len(result.added)} run(s) added, {len(result.present)} already present")
    if result.bad:
        err.print(f"[bold red]{len(result.bad)} run folder(s) skipped:[/]")
        for folder, why in result.bad.items():
            err.print(f"  {escape(folder)}: {escape(why)}")
        err.print(f"  [yellow]->[/] fix or delete those folders, then run `{command_line}` again")
        raise typer.Exit(1)


@warehouse_app.command("publish")
@command
def warehouse_publish(home: Optional[Path] = HomeOpt):
    """A lab: publish this host's runs the lab's DuckLake lacks ($SME2_SHARED_STORE,
    $SME2_SHARED_CATALOG), each in one transaction (docs/deployment.md). Runs already there are left alone."""

    _store_or_explain()
    wh = Warehouse.at(root_of(home))
    added = wh.publish()
    console.print(f"{len(added)} run(s) published to {escape(wh.shared.describe())}")


@warehouse_app.command("compact")
@command
def warehouse_compact(
    keep_days: int = typer.Option(
        30, "--keep-days", min=0, help="Keep snapshots (time travel) this many days; older ones are expired."
    ),
    as_json: bool = JsonOpt,
):
    """A lab: the DuckLake's maintenance (docs/deployment.md): duplicate publishes deleted, adjacent
    files merged, snapshots older than --keep-days expired, files nothing needs deleted. Safe while
    hosts publish and people query; Dagster runs it nightly (lake_maintenance)."""

    store = _store_or_explain()
    done = store.compact(keep_days=keep_days, say=None if as_json else console.print)
    if as_json:
        emit_json(done.__dict__)
        return
    console.print(
        f"{done.runs} run(s): {done.files_before} -> {done.files_after} data files, {done.duplicates_removed} "
        f"duplicate publish(es) removed, {done.snapshots_expired} snapshot(s) expired, {done.files_deleted} file(s) "
        f"deleted in {escape(store.describe())}"
    )


@warehouse_app.command("history")
@command
def warehouse_history(
    limit: int = typer.Option(20, "--limit", min=1, max=10_000, help="How many of the newest snapshots."),
    as_json: bool = JsonOpt,
):
    """A lab: the DuckLake's snapshots, newest first, with the runs each one added. A snapshot
    number (or a time) goes to `sme2 sql --at` and `sme2 report --at`."""

    store = _store_or_explain()
    rows = store.history(limit)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        runs = r["runs_added"]
        what = f"{len(runs)} run(s): {', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''}" if runs else r["changes"]
        console.print(f"{r['snapshot']:>6}  {r['time'][:19]}  {escape(what)}")


@warehouse_app.command("verify")
@command
def warehouse_verify(as_json: bool = JsonOpt):
    """A lab: check every data file the DuckLake's current snapshot needs: missing, truncated (size
    unlike the catalog's) or unreadable files are listed; exit status 1 if any."""

    store = _store_or_explain()
    problems = store.verify()
    if as_json:
        emit_json([p.__dict__ for p in problems])
    elif not problems:
        console.print(f"every data file of {escape(store.describe())} is there and readable  [green]ok[/]")
    for p in problems if not as_json else []:
        err.print(f"[red]{escape(p.table)}[/]: {escape(p.path)}: {escape(p.problem)}")
    if problems:
        if not as_json:
            err.print(
                "  [yellow]->[/] restore the files from backup; or delete the affected runs' rows from the lake and "
                "republish them from the hosts that measured them (sme2 warehouse publish)"
            )
        raise typer.Exit(1)


@warehouse_app.command("migrate")
@command
def warehouse_migrate(
    home: Optional[Path] = HomeOpt,
    legacy: Optional[Path] = typer.Option(
        None, "--from-parquet-store", help="A shared Parquet store of an earlier release to move into the lake."
    ),
    as_json: bool = JsonOpt,
):
    """Move into the lab's DuckLake, once: this host's local warehouse (every run the lake lacks) and,
    with --from-parquet-store, the shared Parquet store of earlier releases. Counts and the named
    queries' answers are the same before and after; running it again adds nothing."""

    store = _store_or_explain()
    wh = Warehouse.at(root_of(home))
    result = migration.migrate(wh, store, Path(legacy) if legacy else None, say=None if as_json else console.print)
    if as_json:
        emit_json(result)
        return
    console.print(
        f"{result['local_published']} local run(s) and {result['legacy_runs_added']} run(s) of the Parquet store "
        f"moved into {escape(store.describe())}; the lake holds {result['lake_runs']} run(s)"
    )


def _store_or_explain():
    store = SharedStore.from_env()
    if store is None:
        raise Sme2Error(
            "no shared store: $SME2_SHARED_STORE is not set",
            "set it to the lab's shared folder and $SME2_SHARED_CATALOG to its PostgreSQL catalog (docs/deployment.md), "
            "e.g. export SME2_SHARED_STORE=/mnt/sme2-lab/store SME2_SHARED_CATALOG='postgres:dbname=sme2_lake host=lab-db'",
        )
    return store


@warehouse_app.command("prune")
@command
def warehouse_prune(
    days: int = typer.Option(
        ..., "--older-than-days", min=0, help="Drop raw op_events of runs older than this; aggregates stay."
    ),
    home: Optional[Path] = HomeOpt,
):
    """Retention: drop per-iteration operator events older than N days, keep every aggregate."""

    n = Warehouse.at(root_of(home)).prune_events(days)
    console.print(f"pruned {n:,} op_events rows")
