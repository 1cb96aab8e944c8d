"""`sme2 pipeline` and `sme2 ui`: the Dagster side of the command line (plugged into `sme2` through
the `sme2.commands` entry point, so `kit` itself never imports Dagster)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import dagster as dg
import typer
from rich.markup import escape

from kit import pipeline as kit_pipeline
from kit.analysis import compare
from kit.cli.common import command, console, err, progress, root_of
from kit.core import environment
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Target, Variant
from kit.devices import inventory, toolsetup
from kit.export import artifact
from kit.models import registry
from kit.skills import checks
from kit.skills.contract import rel
from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse
from sme2_assets import lab

REPO = Path(__file__).resolve().parent.parent


def instance_home(root: DataRoot) -> Path:
    """DAGSTER_HOME: $DAGSTER_HOME if set, else the data root's dagster_home/, with our dagster.yaml:
    SQLite, or PostgreSQL when $SME2_DAGSTER_PG_URL is set (sme2_assets.lab.instance_template)."""
    home = Path(os.environ.get("DAGSTER_HOME") or root.dagster_home)
    home.mkdir(parents=True, exist_ok=True)
    lab.normalize_pg_url()
    lab.write_instance_yaml(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_pipeline(
    instance: dg.DagsterInstance,
    root: DataRoot,
    variants: list[str],
    targets: list[str],
    progress=None,
    settings: dict | None = None,
) -> list[dict]:
    """Materialize the whole graph for these variants and targets, stage by stage (Dagster runs
    one partitions definition per run): models, runners, profiling per model x target, analysis.
    `settings`: config of the sme2 resource (kit.core.settings.Settings' fields) for every run."""
    from sme2_assets.definitions import defs
    from sme2_assets.partitions import MODEL, TARGET, run_tags

    say = progress or (lambda m: None)
    os.environ["SME2_HOME"] = str(root.path)
    instance.add_dynamic_partitions(
        MODEL.name, [v for v in variants if not instance.has_dynamic_partition(MODEL.name, v)]
    )
    instance.add_dynamic_partitions(
        TARGET.name, [t for t in targets if not instance.has_dynamic_partition(TARGET.name, t)]
    )
    results = []

    def run(job: str, key, tags=None):
        say(f"{job} {key if isinstance(key, str) else '|'.join(key.keys_by_dimension.values())}")
        run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        if settings:
            run_config["resources"] = {"sme2": {"config": settings}}
        res = defs.resolve_job_def(job).execute_in_process(
            partition_key=key, instance=instance, tags=tags or {}, run_config=run_config, raise_on_error=False
        )
        checks_run = [
            {
                "check": e.check_name,
                "asset": e.asset_key.to_user_string(),
                "partition": str(key),
                "passed": bool(e.passed),
                # Blocking: a blocking check that failed with ERROR severity (Dagster then blocks
                # the assets downstream); the rest are warnings the summary prints.
                "blocking": bool(e.blocking) and e.severity == dg.AssetCheckSeverity.ERROR,
                "detail": str(getattr(e.metadata.get("detail"), "value", "") or ""),
            }
            for e in res.get_asset_check_evaluations()
        ]
        results.append(
            {"job": job, "partition": str(key), "success": res.success, "run_id": res.run_id, "checks": checks_run}
        )
        if not res.success:
            failure = next((e for e in res.all_events if e.is_failure), None)
            say(f"FAILED {job} {key}: {failure.message if failure else ''}")
        return res

    for v in variants:
        run("prepare_models", v)
    for t in targets:
        run("build_runners", t, run_tags(t))
    for v in variants:
        for t in targets:
            run("profile", dg.MultiPartitionKey({"model": v, "target": t}), run_tags(t))
    for v in variants:
        run("analysis", v)
    return results


def _with_emulator(root: DataRoot, targets: list[str], console) -> list[str]:
    """Set up QEMU and the aarch64 toolchain when emulated targets are asked for; if that is not
    possible here, drop them with the reason instead of failing every emulated run."""

    reg = inventory.load_registry(root)
    emulated = [t for t in targets if reg.get(Target.parse(t).device) and reg[Target.parse(t).device].emulated]
    if not emulated or toolsetup.load_setup(root):
        return targets
    try:
        console.print("setting up the emulated Armv9 targets (sme2 setup)...")
        toolsetup.setup(root)
        return targets
    except Sme2Error as e:
        console.print(f"[yellow]skipping {', '.join(emulated)}: {e.message}[/]\n  -> {e.hint}")
        return [t for t in targets if t not in emulated]


app = typer.Typer()


@app.command("pipeline")
@command
def pipeline_cmd(
    model: str = typer.Option("tiny_seg", "--model", "-m", help="Model package."),
    dtype: str = typer.Option(
        "fp32,int8",
        "--dtype",
        "-d",
        help="Comma-separated dtypes (model partitions <model>-<dtype>), or all the model supports.",
    ),
    target: Optional[str] = typer.Option(
        None,
        "--target",
        "-t",
        help="Comma-separated targets (default: host and the emulated SME2 pair, as available).",
    ),
    home: Optional[Path] = typer.Option(None, "--home", help="Data root."),
):
    """Materialize the whole Dagster asset graph (export, runner, traces, warehouse rows, stats,
    categories, kernels, SME2 comparison, report) for one model on the default targets, on the
    local Dagster instance, then print the summary and how to open the UI."""

    root = root_of(home)
    dh = instance_home(root)
    variants = [Variant(model, d).key for d in registry.dtypes_of(model, dtype)]
    targets = [t.strip() for t in target.split(",")] if target else kit_pipeline.target_partitions(root)
    targets = _with_emulator(root, targets, console)
    instance = dg.DagsterInstance.get()
    with progress(None, False) as (say, _):
        results = run_pipeline(instance, root, variants, targets, say)
    failed = [r for r in results if not r["success"]]

    wh = Warehouse.at(root)
    current = stored_runs.current_summary(wh, variants, targets)
    console.print("\n[bold]Current runs[/] (emulated times are not hardware times)")
    console.print(current.to_string(index=False))
    for v in variants:
        for dev in sorted({t.split(".")[0] for t in targets}):
            try:
                c = compare.compare(wh, v, dev)
            except Exception:  # noqa: BLE001 - a device without a pair has no table
                continue
            console.print(f"\n[bold]{escape(c.headline())}[/]")
            counted = compare.counts_table(c)
            if counted is not None:
                console.print(
                    "Estimated cycles from instruction counts of the emulated CPU (deterministic; an estimate, not "
                    "hardware time):"
                )
                console.print(counted.to_string(index=False))
                console.print("Emulated times (not hardware times) and kernels:")
            console.print(compare.blog_table(c).to_string(index=False))
        rep = root.report_path(v, "report.html")
        if rep.exists():
            console.print(f"report: {rep}")
    checks_run = [c for r in results for c in r["checks"]]
    failed_checks = [c for c in checks_run if not c["passed"]]
    blocking = [c for c in failed_checks if c["blocking"]]
    measured = len(stored_runs.current_summary(wh, variants, targets))
    console.print(
        f"\n{len(results) - len(failed)}/{len(results)} Dagster runs (jobs) succeeded, {measured} measurement(s) current; "
        f"{len(checks_run) - len(failed_checks)}/{len(checks_run)} checks passed. Warehouse: {root.warehouse}"
    )
    for c in failed_checks:
        mark = "[red]FAILED (blocking)[/]" if c["blocking"] else "[yellow]failed (warning)[/]"
        console.print(f"  {mark} {c['check']} on {c['asset']} [{escape(c['partition'])}]: {escape(c['detail'][:300])}")
    console.print(
        f"Open the UI: DAGSTER_HOME={dh} SME2_HOME={root.path} dagster dev -w {REPO / 'workspace.yaml'}   (or: sme2 ui)"
    )
    if failed:
        err.print(f"[red]{len(failed)} run(s) failed:[/] " + ", ".join(f"{r['job']} {r['partition']}" for r in failed))
        raise typer.Exit(1)
    if blocking:
        err.print(
            f"[red]{len(blocking)} blocking check(s) failed[/]: the results above are not trustworthy (no `pipeline ok`)"
        )
        raise typer.Exit(1)
    # The artifact contract (kit.skills): say "pipeline ok" only when every file is there.
    paths, missing = checks.pipeline_artifacts(root, variants, targets)
    if missing:
        err.print(f"[red]{len(missing)} artifact(s) missing:[/] " + ", ".join(escape(p.what) for p in missing))
        raise typer.Exit(1)
    # Both gates of the learning path in one output: each program's `export ok`, then `pipeline ok`.
    for folder in dict.fromkeys(p.parent for p in paths if p.name == artifact.META):
        exp = artifact.load(folder)
        names = [rel(root, folder / n) for n in artifact.artifact_names(exp)]
        console.print(escape(artifact.ok_line(exp, names)), soft_wrap=True)
    warned = f" ({len(failed_checks)} non-blocking check(s) failed: see above)" if failed_checks else ""
    console.print(
        f"pipeline ok: {len(variants)} variant(s) x {len(targets)} target(s){warned}; artifacts under {root.path}:"
    )
    for p in paths:
        console.print(f"  {escape(rel(root, p))}")


@app.command("ui")
@command
def ui_cmd(
    home: Optional[Path] = typer.Option(None, "--home", help="Data root."),
    port: int = typer.Option(3000, "--port", help="Web UI port."),
):
    """Start the Dagster UI and daemon (sensors, nightly schedule) on this data root."""
    root = root_of(home)
    instance_home(root)
    os.environ["SME2_HOME"] = str(root.path)
    console.print(f"Dagster UI on http://127.0.0.1:{port} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    console.print(
        "Sensors and the nightly schedules start stopped: opening the UI measures nothing. To automate, turn on\n"
        "  model_packages (profile new or changed packages), devices (build runners of new devices) and\n"
        "  nightly_profile under Automation in the UI, or: dagster sensor start model_packages -w workspace.yaml"
    )
    sys.exit(
        supervise(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(REPO / "workspace.yaml"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ]
        )
    )


@app.command("worker")
@command
def worker_cmd(
    queue: list[str] = typer.Option(
        ...,
        "--queue",
        "-q",
        help="Lab host queue(s) to serve, e.g. lab-host-1 (repeat for more; 'dagster' = work any host may do).",
    ),
    home: Optional[Path] = typer.Option(
        None, "--home", help="This host's data root (runs, runner cache, warehouse.duckdb)."
    ),
    concurrency: int = typer.Option(
        1,
        "--concurrency",
        min=1,
        max=64,
        help="Steps at a time (1: the host's devices are measured one step at a time).",
    ),
    loglevel: str = typer.Option("INFO", "--loglevel", help="DEBUG, INFO, WARNING or ERROR."),
):
    """Run this lab host's Dagster steps: a Celery worker on its queue (docs/deployment.md).

    Needs $SME2_CELERY_BROKER (the broker every host and the Dagster daemon use), $SME2_DAGSTER_PG_URL
    (the shared instance) and, for the lab's warehouse, $SME2_SHARED_STORE."""
    root = root_of(home)
    argv = lab.worker_argv(queue, concurrency, loglevel)
    for name in (lab.PG_ENV,):
        if not environment.get(name):
            err.print(f"[yellow]${name} is not set: steps run here cannot reach a shared Dagster instance[/]")
    instance_home(root)
    os.environ["SME2_HOME"] = str(root.path)
    config_dir = lab.worker_files(root.path, queue)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(config_dir), str(REPO), os.environ.get("PYTHONPATH")) if p
    )
    console.print(
        f"worker for queue(s) {', '.join(queue)} on data root {root.path} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})"
    )
    sys.exit(supervise(argv))


# ---------------------------------------------------------------- process supervision (sme2 ui)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
STOP_GRACE_S = 30.0  # dagster dev usually stops its webserver and daemon in ~15 s here


class _Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def supervise(argv: list[str], grace_s: float = STOP_GRACE_S) -> int:
    """Run argv (`dagster dev`) in its own process group until it exits or we are told to stop.

    `dagster dev` starts the webserver, the daemon and code servers; a SIGTERM to us alone used to
    leave all of them running with the port open. Now SIGTERM/SIGINT/SIGHUP is forwarded to the
    whole group (dagster shuts down gracefully on it), and whatever is left after `grace_s`
    (or at a second signal) is killed, descendants that left the group included. Returns the
    exit code: the child's, or 128 + the signal number."""
    received: list[int] = []

    def on_signal(signum, frame):
        received.append(signum)
        if len(received) == 1:
            raise _Stop(signum)  # breaks out of wait(); a second signal only hurries the shutdown

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    proc = None
    try:
        proc = subprocess.Popen(argv, start_new_session=True)
        return proc.wait()
    except _Stop as stop:
        if proc is not None:
            stop_tree(proc, stop.signum, grace_s, hurry=lambda: len(received) > 1)
        return 128 + stop.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc is not None and proc.poll() is None:  # any other way out (an exception): no orphans
            stop_tree(proc, signal.SIGTERM, 5.0)


def stop_tree(proc: subprocess.Popen, signum: int, grace_s: float, hurry=lambda: False) -> None:
    """Send signum to proc's process group, wait up to grace_s for the group and every
    descendant to go, then SIGKILL what remains."""
    tree = descendants(proc.pid)
    _signal_group(proc.pid, signum)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and not hurry():
        tree |= descendants(proc.pid) if proc.poll() is None else set()
        tree = {pid for pid in tree if alive(pid)}
        if proc.poll() is not None and not tree and not _group_alive(proc.pid):
            return
        time.sleep(0.1)
    _signal_group(proc.pid, signal.SIGKILL)
    for pid in tree | descendants(proc.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # A group whose members are all zombies is gone for our purposes (they hold no port).
    return any(_stat(pid)[1] == pgid and alive(pid) for pid in _all_pids())


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _stat(pid: int) -> tuple[str, int, int]:
    """(state, process group, parent pid) from /proc/<pid>/stat; ("", -1, -1) if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", -1, -1
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and ")"
    return fields[0], int(fields[2]), int(fields[1])


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    return _stat(pid)[0] not in ("", "Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live descendant of pid (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        state, _, ppid = _stat(p)
        if state:
            children.setdefault(ppid, []).append(p)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return {p for p in found if alive(p)}
