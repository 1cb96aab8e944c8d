"""A device lab across hosts on Dagster's own distributed pieces (docs/deployment.md).

- The instance: `dagster.yaml` (SQLite, zero set-up) or `dagster-postgres.yaml` (run, event-log and
  schedule storage on PostgreSQL, from `$SME2_DAGSTER_PG_URL`): `instance_template()` picks by the
  environment, and `sme2 ui` / `sme2 pipeline` / `sme2 worker` write it into DAGSTER_HOME.
- The executor: dagster-celery's, with a Redis (or RabbitMQ) broker from `$SME2_CELERY_BROKER`,
  when that is set. Each step goes to the queue of the lab host its device is attached to: the run
  tag `sme2/queue` (set from devices.toml's `lab_host` by `partitions.run_tags`), unless the step
  names its own `dagster-celery/queue`; runs without it (exports, analysis) go to the default
  queue `dagster`, which any worker may serve. A step that no worker finishes within
  `$SME2_LAB_STEP_TIMEOUT_S` fails the run with a message naming the queue (a dead host never
  hangs a run), and its task expires then, so a worker that comes back later never runs it.
- The worker: `sme2 worker --queue lab-host-1` on each lab host, one process, one step at a time
  (`--concurrency 1`: the host's devices are never measured by two steps at once).

Celery settings are the same on both sides (`celery_settings()`): tasks are acknowledged after
they finish, and a task whose worker process dies is re-queued (`task_acks_late`,
`task_reject_on_worker_lost`), so a crashed step process is retried by the host's worker; a
message of a host that died whole comes back after the broker's visibility timeout
(`$SME2_CELERY_VISIBILITY_TIMEOUT_S`, longer than any step) if its worker is back by then."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import dagster as dg
from dagster_celery.core_execution_loop import core_celery_execution_loop
from dagster_celery.executor import CELERY_CONFIG, CeleryExecutor
from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG
from dagster._core.execution.retries import RetryMode
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import pack_value

from kit.core import atomic, environment, names
from kit.core.errors import Sme2Error
from kit.store.shared import SharedStore

HERE = Path(__file__).resolve().parent
SQLITE_YAML = HERE / "dagster.yaml"
POSTGRES_YAML = HERE / "dagster-postgres.yaml"

PG_ENV = "SME2_DAGSTER_PG_URL"  # postgresql://user:password@host:5432/dagster
BROKER_ENV = "SME2_CELERY_BROKER"  # redis://lab-server:6379/0
BACKEND_ENV = "SME2_CELERY_BACKEND"  # default: the broker
STEP_TIMEOUT_ENV = "SME2_LAB_STEP_TIMEOUT_S"
VISIBILITY_ENV = "SME2_CELERY_VISIBILITY_TIMEOUT_S"
QUEUE_TAG = "sme2/queue"
DEFAULT_QUEUE = "dagster"  # dagster-celery's default queue: work that may run on any host
DEFAULT_STEP_TIMEOUT_S = 6 * 3600.0


def _seconds(env: str, default: float, environ=None) -> float:
    text = (environment.get(env, environ) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise Sme2Error(f"${env} = {text!r} is not a positive number of seconds", f"e.g. {env}={int(default)}")
    return value


# ---------------------------------------------------------------- the instance


def instance_template(environ=None) -> Path:
    """The dagster.yaml to use: PostgreSQL storage when $SME2_DAGSTER_PG_URL is set, else SQLite."""
    env = environ if environ is not None else os.environ
    return POSTGRES_YAML if (environment.get(PG_ENV, env) or "").strip() else SQLITE_YAML


def normalize_pg_url(environ=None) -> None:
    """dagster-postgres installs psycopg2, and SQLAlchemy 2.1 reads a plain `postgresql://` URL as
    psycopg 3: name the installed driver in the URL (in the environment this process and its
    children, the daemon's run coordinators and Celery, read the instance from)."""
    env = environ if environ is not None else os.environ
    url = (environment.get(PG_ENV, env) or "").strip()
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg") is None:
        env[PG_ENV] = f"postgresql+psycopg2://{rest}"


def write_instance_yaml(home: Path, environ=None) -> Path:
    """Put the chosen template into DAGSTER_HOME. A dagster.yaml a user wrote is kept; one of ours
    is replaced when the environment chose the other (so exporting SME2_DAGSTER_PG_URL moves a
    data root's instance to PostgreSQL; its SQLite history stays in DAGSTER_HOME's files)."""
    target = Path(home) / "dagster.yaml"
    chosen = instance_template(environ)
    ours = {SQLITE_YAML.read_text(), POSTGRES_YAML.read_text()}
    if not target.exists() or (target.read_text() in ours and target.read_text() != chosen.read_text()):
        atomic.write_text(target, chosen.read_text())
    return target


# ---------------------------------------------------------------- the executor


def enabled(environ=None) -> bool:
    """Lab mode: steps run on Celery workers ($SME2_CELERY_BROKER set)."""
    return bool((environment.get(BROKER_ENV, environ) or "").strip())


def celery_settings(environ=None) -> dict:
    """Broker, result backend and Celery settings, identical for the run (executor) and workers."""
    env = environ if environ is not None else os.environ
    broker = (environment.get(BROKER_ENV, env) or "").strip()
    if not broker:
        raise Sme2Error(f"${BROKER_ENV} is not set", f"e.g. export {BROKER_ENV}=redis://lab-server:6379/0")
    return {
        "broker": broker,
        "backend": (environment.get(BACKEND_ENV, env) or "").strip() or broker,
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "task_default_queue": DEFAULT_QUEUE,
            "broker_connection_retry_on_startup": True,
            "broker_transport_options": {
                "visibility_timeout": int(_seconds(VISIBILITY_ENV, 2 * DEFAULT_STEP_TIMEOUT_S, env)),
                "max_retries": 3,
                "interval_start": 0,
                "interval_step": 0.2,
                "interval_max": 0.5,
            },
        },
    }


def step_queue(step_tags: dict, run_tags: dict, default: str) -> str:
    """The queue of a step: its own dagster-celery/queue tag, else its run's sme2/queue (the lab
    host of the run's device), else the default queue. Validated: it becomes a queue name."""
    queue = step_tags.get(DAGSTER_CELERY_QUEUE_TAG) or run_tags.get(QUEUE_TAG) or default
    try:
        return names.queue_name(queue)
    except Sme2Error as e:
        raise Sme2Error(f"run tag {QUEUE_TAG}: {e.message}", e.hint) from None


class StepTimeout(Sme2Error):
    """No worker of a lab host finished a step in time (the host died, or its worker is down)."""


class _Deadline:
    """A Celery result that is `ready` when its step finished or when its deadline passed; then
    `get` raises StepTimeout naming the step, the queue and what to do."""

    def __init__(self, result, step_key: str, queue: str, timeout_s: float):
        self.result, self.step_key, self.queue, self.timeout_s = result, step_key, queue, timeout_s
        self.deadline = time.monotonic() + timeout_s

    def ready(self) -> bool:
        return self.result.ready() or time.monotonic() > self.deadline

    def get(self):
        if self.result.ready():
            return self.result.get()
        self.result.revoke()
        raise StepTimeout(
            f"step {self.step_key} was not finished by a worker of queue {self.queue!r} within"
            f" {self.timeout_s:.0f}s: that lab host died, or its worker (sme2 worker --queue {self.queue}) is down",
            "start the worker on that host (systemctl status sme2-worker@...), then re-execute the run; rows of"
            " runs that committed before the host died are kept, the interrupted measurement left none",
        )

    def revoke(self):
        self.result.revoke()


class LabCeleryExecutor(CeleryExecutor):
    """dagster-celery's executor, routing each step to its device's lab host (see the module)."""

    def __init__(self, step_timeout_s: float, **kwargs):
        super().__init__(**kwargs)
        self.step_timeout_s = step_timeout_s

    def execute(self, plan_context, execution_plan):
        return core_celery_execution_loop(plan_context, execution_plan, step_execution_fn=self._submit)

    def _submit(self, app, plan_context, step, queue, priority, known_state):
        from dagster_celery.tasks import create_task

        routed = step_queue(dict(step.tags or {}), dict(plan_context.dagster_run.tags), queue)
        if routed != queue:  # (dagster-celery's own event above names the queue before routing)
            plan_context.log.info(f'Step "{step.key}" goes to queue "{routed}" (run tag {QUEUE_TAG}: its lab host).')
        queue = routed
        args = ExecuteStepArgs(
            job_origin=plan_context.reconstructable_job.get_python_origin(),
            run_id=plan_context.dagster_run.run_id,
            step_keys_to_execute=[step.key],
            instance_ref=plan_context.instance.get_ref(),
            retry_mode=plan_context.executor.retries.for_inner_plan(),
            known_state=known_state,
            print_serialized_events=True,
        )
        signature = create_task(app).si(
            execute_step_args_packed=pack_value(args),
            executable_dict=plan_context.reconstructable_job.to_dict(),
        )
        result = signature.apply_async(
            priority=priority,
            queue=queue,
            routing_key=f"{queue}.execute_plan",
            expires=self.step_timeout_s,  # a late redelivery after the run gave up is dropped
        )
        return _Deadline(result, step.key, queue, self.step_timeout_s)


def _executor_config() -> dict:
    """dagster-celery's config schema, with this lab's values (from the environment) as defaults."""
    settings = celery_settings()
    config = dict(CELERY_CONFIG)
    config["broker"] = dg.Field(dg.Noneable(dg.StringSource), is_required=False, default_value=settings["broker"])
    config["backend"] = dg.Field(dg.Noneable(dg.StringSource), is_required=False, default_value=settings["backend"])
    config["config_source"] = dg.Field(
        dg.Noneable(dg.Permissive()), is_required=False, default_value=settings["config_source"]
    )
    config["step_timeout_s"] = dg.Field(
        float,
        is_required=False,
        default_value=_seconds(STEP_TIMEOUT_ENV, DEFAULT_STEP_TIMEOUT_S),
        description="A step no worker finished in this time fails the run (a dead lab host).",
    )
    return config


def executor_def() -> dg.ExecutorDefinition:
    @dg.executor(
        name="sme2_lab_celery",
        config_schema=_executor_config(),
        requirements=dg.multiple_process_executor_requirements(),
    )
    def sme2_lab_celery(init_context):
        cfg = init_context.executor_config
        return LabCeleryExecutor(
            step_timeout_s=cfg["step_timeout_s"],
            broker=cfg.get("broker"),
            backend=cfg.get("backend"),
            config_source=cfg.get("config_source"),
            include=cfg.get("include"),
            retries=RetryMode.from_config(cfg["retries"]),
        )

    return sme2_lab_celery


def io_manager():
    """Step outputs on the shared store's folder when there is one (any host can read them), else
    in DAGSTER_HOME as without a lab. (None: Dagster's default.)"""
    store = SharedStore.from_env()
    return dg.FilesystemIOManager(base_dir=str(store.path / ".dagster_io")) if store else None


# ---------------------------------------------------------------- the worker


def worker_files(root_path: Path, queues: list[str], environ=None) -> Path:
    """Write the Celery settings as the module dagster-celery's app reads (dagster_celery_config)
    into <data root>/lab/<queue>/; returns that folder (put on the worker's PYTHONPATH)."""
    settings = celery_settings(environ)
    folder = Path(root_path) / "lab" / "-".join(queues)
    lines = [f"broker_url = {settings['broker']!r}", f"result_backend = {settings['backend']!r}"]
    lines += [f"{k} = {v!r}" for k, v in settings["config_source"].items()]
    atomic.write_text(folder / "dagster_celery_config.py", "\n".join(lines) + "\n")
    return folder


def worker_argv(queues: list[str], concurrency: int = 1, loglevel: str = "INFO") -> list[str]:
    """`celery worker` for these queues: one process per host by default (one step at a time)."""
    queues = [names.queue_name(q) for q in queues]
    if not queues:
        raise Sme2Error("no queue given", "e.g. sme2 worker --queue lab-host-1")
    if loglevel.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise Sme2Error(f"unknown log level {loglevel!r}", "use DEBUG, INFO, WARNING or ERROR")
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "dagster_celery.app",
        "worker",
        "-Q",
        ",".join(queues),
        "-n",
        f"{queues[0]}@%h",
        "--concurrency",
        str(int(concurrency)),
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        loglevel.upper(),
        "--without-gossip",
        "--without-mingle",
    ]
