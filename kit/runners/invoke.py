"""Running a program with a runner on a transport, and turning every failure into a clear error.

Never executes a program in this process: the native runner is its own binary, the pybind runner a
child Python. A crash (signal), hang (timeout) or non-zero exit names the program and what to do."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.core import atomic, limits
from kit.core.errors import RunnerError
from kit.devices.transports.base import Transport
from kit.runners import pathrunner
from kit.runners.build import RunnerBinary

RUNNER_KINDS = ("native", "pybind")


@dataclass
class RunRequest:
    pte: Path
    inputs: Path
    iterations: int = limits.DEFAULT_ITERATIONS
    warmup: int = limits.DEFAULT_WARMUP
    threads: int = 1
    etdump: bool = False
    timeout_s: float = limits.RUN_TIMEOUT_S
    expected_sha256: str | None = None  # from export_meta.json; checked before running
    env: dict = field(default_factory=dict)
    cpus: str | None = None  # CPU list to pin to ("3", "4-7"), None = no pinning
    # Where a failed run's log is kept (<data root>/logs): the out_dir of a run is often a staging
    # or temporary folder that is removed on failure. None: the log stays in out_dir.
    failure_logs: Path | None = None

    def __post_init__(self):
        limits.check_iterations(self.iterations, "iterations")
        limits.check_iterations(self.warmup, "warmup", minimum=0)
        limits.check_threads(self.threads, "threads")
        limits.check_timeout(self.timeout_s, "timeout")


@dataclass
class RunOutcome:
    result: dict  # runner JSON: load_ms, first_inference_ms, warmup_ms, latencies_ms, peak_rss_kb, checksum
    etdump: Path | None
    outputs: Path | None  # None: an executor_runner-compatible binary writes no outputs file
    log: Path
    argv: list[str]
    seconds: float


def verify_program(pte: Path, expected_sha256: str | None) -> None:
    if not Path(pte).is_file():
        raise RunnerError(f"program {pte} does not exist", "export it first: sme2 export --model ... --dtype ...")
    if expected_sha256 and atomic.sha256_file(pte) != expected_sha256:
        raise RunnerError(
            f"program {pte} does not match its export_meta.json (sha256 differs): it was modified or corrupted after export",
            "re-export it: sme2 export --model ... --dtype ... --force",
        )


# The C++ runner prints non-finite doubles (a checksum of NaN outputs) as nan/-nan/inf, which is
# not JSON; they are read as NaN/Infinity so a NaN output is reported as such, not as a broken file.
_NON_FINITE = re.compile(r"(?<=[\s:\[,])(-?)(nan|inf)(?=[\s,\]}])", re.IGNORECASE)


def loads_non_finite(text: str):
    """JSON text whose numbers may be the C++ runner's nan/-nan/inf."""

    def as_json(m: re.Match) -> str:
        return "NaN" if m.group(2).lower() == "nan" else f"{m.group(1)}Infinity"

    return json.loads(_NON_FINITE.sub(as_json, text))


def read_result(path: Path) -> dict:
    """A runner's result JSON (non-finite numbers allowed)."""
    return loads_non_finite(Path(path).read_text())


def keep_failure_log(log: Path, failure_logs: Path | None, label: str) -> Path:
    """Copy a failed run's log to `failure_logs` (when given) and return the path a hint may name."""
    if failure_logs is None or not Path(log).exists():
        return log
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "run"
    kept = Path(failure_logs) / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{slug}-{Path(log).name}"
    try:
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, kept)
    except OSError:  # keeping the log must never hide the failure itself
        return log
    return kept


def _tail(text: str, n: int = 12) -> str:
    lines = [l for l in text.strip().splitlines() if "cpuinfo_utils" not in l]
    return "\n".join(lines[-n:])


def run_program(
    kind: str, req: RunRequest, out_dir: Path, transport: Transport, binary: RunnerBinary | None = None, label: str = ""
) -> RunOutcome:
    """Run once (all warmups + iterations) and collect JSON, outputs and the ETDump into out_dir."""
    if kind not in RUNNER_KINDS:
        raise RunnerError(f"unknown runner {kind!r}", f"use one of {', '.join(RUNNER_KINDS)}")
    verify_program(req.pte, req.expected_sha256)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "etdump" if req.etdump else "timing"
    label = label or f"{kind} runner"
    local_fs = getattr(transport, "local_fs", True)
    if kind == "pybind":
        if not local_fs or transport.emulated:
            raise RunnerError(
                f"the pybind runner cannot run on device {transport.device!r}",
                "use --runner native for remote and emulated targets",
            )
        prog = [sys.executable, "-m", "kit.runners.pybind_child"]
    else:
        if binary is None:
            raise RunnerError("the native runner is not built", "sme2 build-runner")
        prog = [str(binary.path)]
    work = str(out_dir) if local_fs else transport.workdir(stem)
    try:
        if local_fs:
            pte, inputs = str(req.pte), str(req.inputs)
        else:
            prog = [transport.install_runner(binary)]
            pte, inputs = f"{work}/program.pte", f"{work}/inputs.bin"
            transport.push(req.pte, pte)
            transport.push(req.inputs, inputs)
        files = {"json": f"{work}/{stem}.json", "outputs": f"{work}/{stem}_outputs.bin"}
        if req.etdump:
            files["etdump"] = f"{work}/{stem}.etdp"
        argv = [
            *prog,
            "--model",
            pte,
            "--inputs",
            inputs,
            "--iterations",
            str(req.iterations),
            "--warmup",
            str(req.warmup),
            "--threads",
            str(req.threads),
        ]
        for k, v in files.items():
            argv += [f"--{k}", v]
        done = transport.run(argv, timeout=req.timeout_s, env=req.env, cpus=req.cpus)
        log = out_dir / f"{stem}.log"
        kept_log = _raise_for_failure(done, req, log, label, transport, binary, local_fs)
        where = f"on {transport.device}"
        if not local_fs:
            for remote in files.values():
                transport.pull(remote, out_dir / Path(remote).name)
        local = {k: out_dir / Path(v).name for k, v in files.items()}
        try:
            result = read_result(local["json"])
        except (OSError, json.JSONDecodeError) as e:
            # Exit status 0 without a result is a failure, never a silent success.
            raise RunnerError(
                f"{label} {where} exited (status {done.returncode}) without a readable result running "
                f"{Path(req.pte).name} ({type(e).__name__}: {e})",
                f"the runner ended before writing {Path(files['json']).name}; log: {kept_log()}",
            ) from e
        if not local["outputs"].exists():
            raise RunnerError(
                f"{label} {where} exited (status {done.returncode}) without writing the outputs of {Path(req.pte).name}",
                f"log: {kept_log()}",
            )
        if req.etdump and not (local["etdump"].exists() and local["etdump"].stat().st_size > 0):
            raise RunnerError(
                f"{label} {where} wrote no ETDump",
                "the runtime must be built with the event tracer (ET_EVENT_TRACER_ENABLED)",
            )
        result["argv"] = done.argv
        return RunOutcome(result, local.get("etdump"), local["outputs"], log, done.argv, done.seconds)
    finally:
        if not local_fs:
            transport.cleanup(work)


def _raise_for_failure(done, req: RunRequest, log: Path, label: str, transport, binary, local_fs: bool):
    """Write the run's log; raise a RunnerError for a hang, a signal or a non-zero exit. Returns a
    function giving the log path a hint may name (kept outside out_dir when asked)."""
    atomic.write_text(log, f"$ {' '.join(done.argv)}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    where = f"on {transport.device}"

    def kept_log() -> Path:  # a hint must name a log that outlives out_dir
        return keep_failure_log(log, req.failure_logs, f"{label}-{Path(req.pte).stem}")

    if done.timed_out:
        raise RunnerError(
            f"{label} hung {where}: no result after {req.timeout_s:.0f}s running {Path(req.pte).name}",
            f"raise the timeout for large models or check the device; log: {kept_log()}",
        )
    sig = _signal_of(done.returncode)
    if sig:
        raise RunnerError(
            f"{label} crashed with {sig} {where} running {Path(req.pte).name}: {_tail(done.stderr, 3) or 'no message'}",
            f"the program may be corrupt: re-export it (sme2 export --force) and check its sha256; log: {kept_log()}",
        )
    if done.returncode != 0:
        if not local_fs and _missing_library(done.stderr):
            transport.forget_runner(binary)  # the next run pushes a whole bundle again
        raise RunnerError(
            f"{label} failed {where} (exit {done.returncode}) running {Path(req.pte).name}:\n{_tail(done.stderr)}",
            _hint_for(done.stderr, kept_log()),
        )
    return kept_log


# executor_runner's summary line, and the line of per-iteration JSON our runner adds to it.
_SUMMARY = re.compile(r"model executed successfully\s+(\d+)\s+time\(s\)\s+in\s+([0-9.]+)\s*ms", re.IGNORECASE)
JSON_PREFIX = "SME2_RUNNER_JSON "


def parse_executor_runner_output(stdout: str) -> dict:
    """What an executor_runner-compatible binary said about its timing: our runner's JSON line
    (per-iteration latencies) when present, and executor_runner's summary (`Model executed
    successfully N time(s) in X ms`) as `reported_executions` / `reported_total_ms`."""
    result: dict = {}
    for line in stdout.splitlines():
        if line.startswith(JSON_PREFIX):
            try:
                parsed = loads_non_finite(line[len(JSON_PREFIX) :])
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                result.update(parsed)
    summaries = list(_SUMMARY.finditer(stdout))
    if summaries:
        m = summaries[-1]
        result["reported_executions"] = int(m.group(1))
        result["reported_total_ms"] = float(m.group(2))
    return result


def run_executor_runner(
    req: RunRequest,
    out_dir: Path,
    transport: Transport,
    binary: RunnerBinary,
    extra_args: tuple[str, ...] = (),
    label: str = "",
    stem: str | None = None,
) -> RunOutcome:
    """Run an executor_runner-compatible binary (the `path` recipe) as Arm's perf_runner drives
    executor_runner: `--model_path P --num_executions N --cpu_threads T [--etdump_path E]`, then the
    experiment's extra arguments. One process runs warmup + iterations executions (the caller drops
    the first `warmup`); the binary generates its own inputs (executor_runner: all ones).

    `result` holds the binary's JSON line when it prints one (our runner does), else no
    `latencies_ms`: the caller then times iterations from the ETDump's Method::execute events."""
    verify_program(req.pte, req.expected_sha256)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = stem or ("etdump" if req.etdump else "timing")
    label = label or f"runner {binary.path.name}"
    local_fs = getattr(transport, "local_fs", True)
    work = str(out_dir) if local_fs else transport.workdir(stem)
    try:
        if local_fs:
            prog, pte = str(binary.path), str(req.pte)
        else:
            prog, pte = transport.install_runner(binary), f"{work}/program.pte"
            transport.push(req.pte, pte)
        etdump_path = f"{work}/{stem}.etdp" if req.etdump else None
        argv = [
            prog,
            "--model_path",
            pte,
            "--num_executions",
            str(req.warmup + req.iterations),
            "--cpu_threads",
            str(req.threads),
        ]
        if etdump_path:
            argv += ["--etdump_path", etdump_path]
        argv += list(extra_args)
        done = transport.run(argv, timeout=req.timeout_s, env=req.env, cpus=req.cpus)
        log = out_dir / f"{stem}.log"
        kept_log = _raise_for_failure(done, req, log, label, transport, binary, local_fs)
        local_etdump = None
        if etdump_path:
            local_etdump = out_dir / Path(etdump_path).name
            if not local_fs:
                transport.pull(etdump_path, local_etdump)
            if not (local_etdump.exists() and local_etdump.stat().st_size > 0):
                raise RunnerError(
                    f"{label} on {transport.device} wrote no ETDump at {etdump_path}",
                    "build the runner with the event tracer (EXECUTORCH_BUILD_DEVTOOLS=ON, "
                    f"EXECUTORCH_ENABLE_EVENT_TRACER=ON: Arm's presets do); log: {kept_log()}",
                )
        result = parse_executor_runner_output(done.stdout)
        result.update({"runner": pathrunner.RECIPE, "argv": done.argv, "wall_s": done.seconds})
        return RunOutcome(result, local_etdump, None, log, done.argv, done.seconds)
    finally:
        if not local_fs:
            transport.cleanup(work)


def _signal_of(returncode: int) -> str:
    """SIGSEGV etc. for a signal death: negative codes locally, 128+N through a remote shell."""
    if returncode < 0:
        code = -returncode
    elif returncode in (128 + 4, 128 + 6, 128 + 7, 128 + 8, 128 + 11):
        code = returncode - 128
    else:
        return ""
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _missing_library(stderr: str) -> bool:
    s = stderr.lower()
    return (
        "error while loading shared libraries" in s
        or "cannot open shared object" in s
        or "library" in s
        and "not found" in s
    )


def _hint_for(stderr: str, log: Path) -> str:
    s = stderr.lower()
    if "no space left" in s:
        return f"the device is out of disk space: free some and re-run; log: {log}"
    if _missing_library(stderr):
        return f"a shared library is missing on the device: the runner bundle was removed, re-run to push it again; log: {log}"
    if "cannot load method" in s or "invalid program" in s:
        return f"the .pte could not be loaded: re-export it (sme2 export --force); log: {log}"
    return f"see the log: {log}"
