"""Crash safety with real processes: `kill -9` of `sme2 profile` (or of `sme2 export -j 2`, or of a
process running a program over ssh) leaves nothing running, and the next start removes the
killed run's staging folder and ingests run folders that were committed without warehouse rows."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kit.core import atomic, lifetime
from kit.core.home import DataRoot
from kit.export import exporter
from kit.runners.build import BINARY
from kit.store import warehouse

pytestmark = pytest.mark.slow  # kills real sme2 processes mid-run and restarts them (minutes on 2 cores)

GONE_WITHIN_S = 10.0  # a process that dies with its parent is gone in milliseconds
START_WITHIN_S = 180.0  # a cold CLI start imports torch and executorch on two shared cores


def _cli(root: DataRoot, *args: str) -> list[str]:
    return [sys.executable, "-m", "kit.cli", *args, "--home", str(root.path)]


def _processes_with(*markers: str) -> dict[int, str]:
    """Live processes whose command line contains every marker (zombies have none)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd and all(m in cmd for m in markers):
            found[int(entry.name)] = cmd
    return found


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rfind(b")") + 2 :].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _alive(pid: int, cmd: str) -> bool:
    """Still running as the same program (a zombie or a reused pid is not)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace") == cmd
    except OSError:
        return False


def _wait_gone(procs: dict[int, str], within: float = GONE_WITHIN_S) -> dict[int, str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        left = {p: c for p, c in procs.items() if _alive(p, c)}
        if not left:
            return {}
        time.sleep(0.1)
    return {p: c for p, c in procs.items() if _alive(p, c)}


def _kill_leftovers(procs: dict[int, str]) -> None:
    """Our own test's orphans (on code without the fix): by pid, after checking it is still them."""
    for pid, cmd in procs.items():
        if _alive(pid, cmd):
            os.kill(pid, signal.SIGKILL)


def _wait_for(what: str, check, proc: subprocess.Popen, log: Path, within: float = START_WITHIN_S):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no {what} after {within:.0f}s:\n{log.read_text()[-3000:]}")


# ---------------------------------------------------------------- kill -9 of `sme2 profile`


@pytest.fixture(scope="module")
def crash_home(home, tiny, native_runner, tmp_path_factory) -> DataRoot:
    """A data root of its own (its warehouse holds only what these tests put there), with the
    session's fp32 export and native runner copied in, and one real profiled run."""
    root = DataRoot.resolve(tmp_path_factory.mktemp("crash"))
    exp = exporter.export_variant(tiny, "fp32", "small", home)
    shutil.copytree(exp.folder, root.exports / exp.folder.name)
    shutil.copytree(native_runner.folder, root.runners / native_runner.folder.name, symlinks=True)
    done = subprocess.run(
        _cli(root, "profile", "--size", "small", "--threads", "1", "-n", "5", "-w", "1", "--json"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def killed_profile(crash_home, tmp_path_factory):
    """`sme2 profile` with enough iterations to run for minutes, killed with SIGKILL as soon as its
    runner is measuring. Returns the runner processes seen and the staging folders left."""
    log = tmp_path_factory.mktemp("killed") / "profile.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            _cli(crash_home, "profile", "--size", "small", "--threads", "1", "-n", "100000", "-w", "0", "--json"),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    runners = _wait_for("a running runner", lambda: _processes_with(BINARY, str(crash_home.path)), proc, log)
    time.sleep(0.5)  # well inside the timing run
    staging = sorted(crash_home.runs.glob(".*.staging"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    yield {"runners": runners, "staging": staging}
    _kill_leftovers(runners)


def test_killed_profile_takes_its_runner_with_it(killed_profile):
    assert killed_profile["runners"]
    left = _wait_gone(killed_profile["runners"])
    assert not left, f"runner still running {GONE_WITHIN_S:.0f}s after its `sme2 profile` was killed: {left}"


@pytest.fixture(scope="module")
def next_start(crash_home, killed_profile):
    """What a killed run between its folder's rename and its warehouse insert leaves (a committed
    run folder without rows: a copy of a real run under a new id), a folder that cannot be
    ingested, then the next `sme2 profile`."""
    _kill_leftovers(killed_profile["runners"])  # on code without the fix: do not measure beside it
    stored = sorted(p for p in crash_home.runs.iterdir() if not p.name.startswith("."))[0]
    unstored = crash_home.runs / f"{stored.name}-unstored"
    shutil.copytree(stored, unstored)
    record = json.loads((unstored / "run.json").read_text())
    record["run_id"] = unstored.name
    (unstored / "run.json").write_text(json.dumps(record))
    broken = crash_home.runs / f"{stored.name}-broken"
    shutil.copytree(stored, broken)
    (broken / "run.json").write_text(json.dumps({**record, "run_id": broken.name}))
    (broken / "timing.json").write_text("{ truncated")
    info = subprocess.run(_cli(crash_home, "warehouse", "info", "--json"), capture_output=True, text=True)
    done = subprocess.run(
        _cli(crash_home, "profile", "--size", "small", "--threads", "1", "-n", "3", "-w", "1", "--json"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = subprocess.run(_cli(crash_home, "warehouse", "info", "--json"), capture_output=True, text=True)
    return {"unstored": unstored, "broken": broken, "info_before": info, "profile": done, "info_after": after}


def test_next_start_removes_the_killed_runs_staging_folder(killed_profile, next_start, crash_home):
    assert killed_profile["staging"], "the killed profile had no staging folder under runs/"
    left = [p for p in killed_profile["staging"] if p.exists()]
    assert not left, f"staging folders of the killed run are still there after the next start: {left}"
    assert not list(crash_home.runs.glob(".*.staging"))


def test_next_start_ingests_run_folders_committed_without_warehouse_rows(next_start, crash_home):
    run_id = next_start["unstored"].name
    assert warehouse.Warehouse.at(crash_home).has_run(run_id)
    assert run_id in next_start["profile"].stderr  # said what it recovered
    json.loads(next_start["profile"].stdout)  # the --json output stays clean


def test_next_start_reports_run_folders_it_cannot_ingest(next_start, crash_home):
    broken = next_start["broken"]
    assert not warehouse.Warehouse.at(crash_home).has_run(broken.name)
    stderr = next_start["profile"].stderr
    assert str(broken) in stderr and "timing.json" in stderr and "cannot be ingested" in stderr


def test_warehouse_info_counts_run_folders_not_in_the_warehouse(next_start):
    before, after = next_start["info_before"], next_start["info_after"]
    assert before.returncode == 0, before.stderr
    info = json.loads(before.stdout)
    assert info["runs_not_in_warehouse"] == 2
    assert set(info["run_folders_not_in_warehouse"]) == {next_start["unstored"].name, next_start["broken"].name}
    assert json.loads(after.stdout)["run_folders_not_in_warehouse"] == [next_start["broken"].name]


# ---------------------------------------------------------------- staging folders of dead owners

KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from kit.core import atomic

    with atomic.staged_dir(Path(sys.argv[1])) as stage:
        (stage / "half.bin").write_bytes(b"x" * 1000)
        print(stage, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


LIVE_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from kit.core import atomic

    with atomic.staged_dir(Path(sys.argv[1])) as stage:
        print(stage, flush=True)
        sys.stdin.read()  # holds the staging folder until the test closes stdin
        (stage / "done").write_text("ok")
    """
)


def _killed_writer(final: Path) -> Path:
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    return Path(done.stdout.strip())


def _dead_owner_tag() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    owner = lifetime.Owner(proc.pid, lifetime._start_ticks(proc.pid), *lifetime.Owner.me().tag().split("-")[2:])
    proc.communicate(b"")
    return owner.tag()


def test_staging_folder_of_a_killed_writer_is_reclaimed_and_a_live_ones_kept(tmp_path):
    live = subprocess.Popen(
        [sys.executable, "-c", LIVE_WRITER, str(tmp_path / "runs" / "r2")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        live_stage = Path(live.stdout.readline().decode().strip())
        final = tmp_path / "runs" / "r1"
        left = _killed_writer(final)
        assert left.is_dir() and left.parent == final.parent and not final.exists()
        assert atomic.reclaim_stale(final.parent) == [left]
        assert not left.exists() and live_stage.is_dir()  # its owner is alive: still being written
    finally:
        live.communicate(b"")
    assert live.returncode == 0 and (tmp_path / "runs" / "r2" / "done").exists()


def test_next_staged_dir_in_the_same_folder_reclaims_what_a_killed_writer_left(tmp_path):
    left = _killed_writer(tmp_path / "exports" / "a")
    with atomic.staged_dir(tmp_path / "exports" / "b"):
        assert not left.exists()


def test_old_folder_of_a_writer_killed_between_the_two_renames_is_restored(tmp_path):
    """staged_dir moves `final` to `.old`, then the stage to `final`: a kill in between leaves no
    `final`. The previous version comes back."""
    parent = tmp_path / "runners"
    parent.mkdir()
    tag = _dead_owner_tag()
    old = parent / f".wheel-linux-abc.{tag}.old"
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    kept_old = parent / f".wheel-linux-def.{tag}.old"  # its final exists: the .old is just removed
    kept_old.mkdir()
    (parent / "wheel-linux-def").mkdir()
    assert sorted(atomic.reclaim_stale(parent)) == sorted([old, kept_old])
    assert (parent / "wheel-linux-abc" / "manifest.json").exists()
    assert not old.exists() and not kept_old.exists() and (parent / "wheel-linux-def").is_dir()


# ---------------------------------------------------------------- other children

SLOW_PACKAGE = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import torch
    from kit.models.modelspec import ModelSpec

    def build(size, checkpoint=None):
        Path(os.environ["SLOW_MARKERS"], str(os.getpid())).write_text("building")
        time.sleep(600)
        return torch.nn.Conv2d(3, 4, 3).eval()

    def example_inputs(size):
        return (torch.rand(1, 3, 16, 16),)

    MODEL = ModelSpec(name="slow_net", build=build, example_inputs=example_inputs,
                      sizes={"small": {}, "full": {}}, dtypes=("fp32", "int8"))
    """
)


def test_killed_parallel_export_takes_its_workers_with_it(tmp_path):
    models, markers = tmp_path / "models", tmp_path / "markers"
    (models / "slow_net").mkdir(parents=True)
    (models / "slow_net" / "model.py").write_text(SLOW_PACKAGE)
    markers.mkdir()
    root = DataRoot.resolve(tmp_path / "home")
    log = tmp_path / "export.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            _cli(root, "export", "--model", "slow_net", "--dtype", "fp32,int8", "--size", "small", "-j", "2")
            + ["--models-dir", str(models)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "SLOW_MARKERS": str(markers)},
        )
    pids = _wait_for("two exporting workers", lambda: len(list(markers.iterdir())) >= 2 or None, proc, log)
    workers = {int(p.name): Path(f"/proc/{p.name}/cmdline").read_bytes() for p in markers.iterdir()}
    workers = {p: c.replace(b"\0", b" ").decode(errors="replace") for p, c in workers.items()}
    assert pids and set(workers) <= set(_children_of(proc.pid))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        left = _wait_gone(workers)
        assert not left, f"export workers still running after `sme2 export -j 2` was killed: {list(left)}"
    finally:
        _kill_leftovers(workers)


RUN_OVER_SSH = textwrap.dedent(
    """
    import sys
    from kit.devices.transports.ssh import SshTransport

    host, port, user, key, state, remote = sys.argv[1:7]
    t = SshTransport("loopback", host=host, port=int(port), user=user, key=key, state_dir=state, remote_dir=remote)
    t.run(["sleep", sys.argv[7]], timeout=600)
    """
)
needs_sshd = pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="openssh-server is not installed")


@pytest.fixture(scope="module")
def ssh_device(tmp_path_factory):
    """Our own sshd on 127.0.0.1 and the connection settings of a device on it."""
    from tests.sshd import Sshd

    folder = tmp_path_factory.mktemp("ssh_device")
    server = Sshd(folder / "sshd").start()
    (folder / "state").mkdir()
    yield server, folder
    if server.proc is not None:  # by its pid: its session handlers end with their connections
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


@needs_sshd
def test_program_on_the_ssh_device_keeps_its_output_and_exit_status(ssh_device):
    """Runs are wrapped to die with the connection; exit status, signals and output pass through."""
    from kit.devices.transports.ssh import SshTransport

    server, folder = ssh_device
    t = SshTransport(
        "loopback",
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        key=str(server.key),
        state_dir=str(folder / "state"),
        remote_dir=str(folder / "remote"),
    )
    done = t.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert t.run(["sh", "-c", "kill -SEGV $$"], timeout=60).returncode == 128 + signal.SIGSEGV


@needs_sshd
def test_killed_process_takes_its_program_on_the_ssh_device_with_it(ssh_device, tmp_path):
    server, folder = ssh_device
    marker = f"{time.time_ns() % 10**6 + 1000}.{os.getpid()}"  # a unique sleep duration
    log = tmp_path / "ssh.log"
    argv = [str(server.port), server.user, str(server.key), str(folder / "state"), str(folder / "remote"), marker]
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN_OVER_SSH, "127.0.0.1", *argv], stdout=subprocess.DEVNULL, stderr=err
        )

    def program():  # the sleep itself, not the shells and the ssh client that carry its argv
        return {p: c for p, c in _processes_with("sleep", marker).items() if c.startswith("sleep ")}

    remote = _wait_for("the program on the device", program, proc, log, 60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        left = _wait_gone(remote)
        assert not left, f"the program on the ssh device outlived the killed process: {left}"
    finally:
        _kill_leftovers(remote)
