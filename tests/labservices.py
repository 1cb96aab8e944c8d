"""A device lab on one machine for the `lab` tests: a PostgreSQL and a Redis of their own on free
loopback ports, `sme2 worker` processes as lab hosts (each with its own data root), and a run
coordinator process (what the Dagster daemon's run worker is in a real lab).

    python -m tests.labservices run --job profile --model tiny_seg-fp32 --target bench1.sme2-off \
        --tags '{"sme2/queue": "lab-host-1"}' --config '{...}'

prints one JSON line: run id, success, the error, and which Celery worker executed each step."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in PG_DIRS:
        if (d / name).is_file():
            return str(d / name)
    return None


def missing_binaries() -> list[str]:
    return [n for n in ("initdb", "pg_ctl", "postgres", "redis-server") if _tool(n) is None]


def _wait_port(port: int, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f}s")


class Postgres:
    """initdb + pg_ctl in a temp folder (as the `postgres` user when we are root: PostgreSQL refuses
    to run as root), trust auth on 127.0.0.1 only."""

    def __init__(self, fsync: bool = False):
        self.fsync = fsync  # off for tests; on for the bench (the Parquet store fsyncs every file)
        self.folder = Path(tempfile.mkdtemp(prefix="sme2-lab-pg-"))  # /tmp: reachable by postgres
        self.port = free_port()
        self.data = self.folder / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.folder, "postgres", "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/dagster"

    def conninfo(self, dbname: str) -> str:
        """A libpq connection string (what DuckDB's postgres scanner takes)."""
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user=postgres"

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.conninfo(name)

    def start(self) -> "Postgres":
        self.data.mkdir()
        if self.as_user:
            shutil.chown(self.data, "postgres", "postgres")
        subprocess.run(
            [*self.as_user, _tool("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            options += " -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [
                *self.as_user,
                _tool("pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.folder / "postgres.log"),
                "-w",
                "-t",
                "120",
                "-o",
                options,
                "start",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
        self.create_database("dagster")
        return self

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, _tool("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "postgres.log"), *args],
            check=True,
            capture_output=True,
            timeout=180,
        )

    def halt(self) -> None:
        """Stop the server as a crash would (immediate), keeping its data."""
        self._pg_ctl("-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        if not self.fsync:
            options += " -c fsync=off -c full_page_writes=off"
        self._pg_ctl("-w", "-t", "120", "-o", options, "start")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self.as_user, _tool("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def create_instance_schema(env: dict) -> None:
    """Create the Dagster instance's tables in PostgreSQL from one process: processes that open a
    new instance at the same moment race to create them (DuplicateObject)."""
    subprocess.run(
        [sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get().dispose()"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )


class Redis:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "Redis":
        argv = [_tool("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no"]
        log = open(self.folder / "redis.log", "wb")  # noqa: SIM115 - the server's lifetime
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_port(self.port, 30, "redis-server", self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
            if self.proc.poll() is None:
                self.proc.kill()


class Worker:
    """`sme2 worker --queue <queue> --home <root>`: one lab host, in its own process group."""

    def __init__(self, queue: str, root: Path, env: dict):
        self.queue, self.root, self.env = queue, Path(root), env
        self.proc: subprocess.Popen | None = None
        self.log = self.root / f"worker-{queue}.log"

    def start(self) -> "Worker":
        argv = [sys.executable, "-m", "kit.cli", "worker", "--queue", self.queue, "--home", str(self.root)]
        out = open(self.log, "ab")  # noqa: SIM115 - the worker's lifetime
        self.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=REPO, start_new_session=True
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:  # celery prints "ready." once it consumes
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.queue} exited: {self.log.read_text()[-3000:]}")
            if b" ready." in self.log.read_bytes():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker {self.queue} not ready in 180 s: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """A host dying: SIGKILL to the whole worker (its pool processes and the runner included)."""
        if self.proc is not None:
            from sme2_assets.commands import descendants

            tree = descendants(self.proc.pid)  # celery runs in a process group of its own (sme2 worker supervises it)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in tree:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()
        # a stale ready line must not satisfy the next start
        if self.log.exists():
            self.log.rename(self.log.with_suffix(f".{int(time.time() * 1000)}.old"))


def launch(env: dict, job: str, model: str, target: str, tags: dict, config: dict) -> subprocess.Popen:
    """A run coordinator process (see `main`)."""
    argv = [sys.executable, "-m", "tests.labservices", "run", "--job", job, "--model", model, "--target", target]
    argv += ["--tags", json.dumps(tags), "--config", json.dumps(config)]
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result_of(proc: subprocess.Popen, timeout_s: float) -> dict:
    out, err = proc.communicate(timeout=timeout_s)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"coordinator printed no result (exit {proc.returncode}):\n{out[-3000:]}\n{err[-5000:]}")
    return json.loads(lines[-1])


def _run(args) -> None:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from sme2_assets.partitions import MODEL, TARGET

    instance = dg.DagsterInstance.get()
    for name, key in ((MODEL.name, args.model), (TARGET.name, args.target)):
        if not instance.has_dynamic_partition(name, key):
            instance.add_dynamic_partitions(name, [key])
    recon = ReconstructableRepository.for_module(
        "sme2_assets.definitions", "defs", working_directory=str(REPO)
    ).get_reconstructable_job(args.job)
    tags = {
        **json.loads(args.tags),
        "dagster/partition": f"{args.model}|{args.target}",
        "dagster/partition/model": args.model,
        "dagster/partition/target": args.target,
    }
    result = dg.execute_job(recon, instance=instance, run_config=json.loads(args.config), tags=tags)
    workers: dict[str, str] = {}
    errors: list[str] = []
    for record in instance.all_logs(result.run_id):
        event = record.dagster_event
        if event is None:
            continue
        data = event.event_specific_data if event.event_type_value == "ENGINE_EVENT" else None
        meta = getattr(data, "metadata", None) or {}
        if "Celery worker" in meta and event.step_key:
            workers[event.step_key] = str(getattr(meta["Celery worker"], "value", meta["Celery worker"]))
        error = getattr(event.event_specific_data, "error", None)
        if error is not None:
            errors.append(error.to_string())
        elif event.is_failure:
            errors.append(record.message or event.event_type_value)
    print(json.dumps({"run_id": result.run_id, "success": result.success, "workers": workers, "errors": errors}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.labservices")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute one partition of a job on the lab's executor")
    run.add_argument("--job", required=True)
    run.add_argument("--model", required=True)
    run.add_argument("--target", required=True)
    run.add_argument("--tags", default="{}")
    run.add_argument("--config", default="{}")
    args = parser.parse_args()
    _run(args)


if __name__ == "__main__":
    main()
