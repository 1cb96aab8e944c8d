"""The transport interface: prepare, push files, run an argv with a timeout, pull files, describe.

Everything device-specific (argv prefixes, copy commands, conditions) lives in the subclasses;
error handling for a run (signal, timeout, exit code) lives in kit.runners, once for all."""

from __future__ import annotations

import contextlib
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from kit.core import lifetime
from kit.devices import conditions


@dataclass
class Completed:
    argv: list[str]
    returncode: int | None  # None: timed out
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


def run_local(argv: list[str], timeout: float, env: dict | None = None, cwd: str | None = None) -> Completed:
    """Run an argv list on this machine (never through a shell); a timeout kills the process group.

    The child dies with this process: SIGKILL through PR_SET_PDEATHSIG (kit.core.lifetime), so a killed
    `sme2 profile` never leaves a runner busy on the core the next run measures on. It is the
    thread calling run_local that forks and then waits here, so the child can only outlive that
    thread by this process dying. Its own session (start_new_session) lets a timeout kill the
    whole group (taskset, qemu-aarch64 and what they start).

    The child's stdin is a pipe this process holds open and never writes: it reads end-of-file
    only once this process is gone. That reaches across ssh, where no signal does (see
    RemoteTransport.run)."""
    import os
    import signal

    t0 = time.monotonic()
    stdin_read, stdin_keepalive = os.pipe()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=stdin_read,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=lifetime.die_with_parent(),
        )
    except BaseException:
        os.close(stdin_keepalive)
        raise
    finally:
        os.close(stdin_read)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Completed(argv, proc.returncode, out, err, time.monotonic() - t0)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return Completed(argv, None, out or "", err or "", time.monotonic() - t0, timed_out=True)
    except BaseException:  # Ctrl-C or any error while waiting: the child's own session never saw it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        os.close(stdin_keepalive)


@dataclass
class Transport(ABC):
    """A way to run programs on one device."""

    device: str
    options: dict = field(default_factory=dict)
    emulated: bool = False
    local_cpu: bool = True  # shares this machine's CPU: measurements serialize with all local runs
    local_fs: bool = True  # sees this machine's files: runs in place, nothing to push or pull

    def prepare(self) -> None:
        """Check the device is reachable and ready; raise TargetError if not."""

    @abstractmethod
    def workdir(self, name: str) -> str:
        """A fresh working folder on the device for one run."""

    @abstractmethod
    def push(self, local: Path, remote: str) -> None: ...

    @abstractmethod
    def pull(self, remote: str, local: Path) -> None: ...

    @abstractmethod
    def run(self, argv: list[str], timeout: float, env: dict | None = None, cpus: str | None = None) -> Completed:
        """Run argv on the device; `cpus` pins it to a CPU list ("3", "4-7")."""

    def cleanup(self, remote_dir: str) -> None:
        """Remove a run's working folder on the device."""

    @contextlib.contextmanager
    def measurement(self):
        """Device settings held while measuring (adb: screen awake, animations off), restored after."""
        yield

    def describe(self) -> dict:
        """Conditions that explain a number: CPU, cores, governor, frequencies, thermal zones."""
        return {}

    def read_file(self, path: str) -> str | None:
        """A small text file from the device (for /proc/cpuinfo and friends), or None."""
        return None

    def fastest_core(self) -> int | None:
        """The core with the highest maximum frequency, when the device tells (big.LITTLE)."""
        return fastest_core(self.read_file, self.core_count())

    def core_count(self) -> int:
        return conditions.parse_cpuinfo(self.read_file("/proc/cpuinfo") or "")["cores"] or 1


def fastest_core(read, cores: int) -> int | None:
    """Highest cpuinfo_max_freq wins; the last such core on ties (big cores are numbered last on
    Arm SoCs). None when no frequency is readable."""
    best, best_freq = None, -1
    for cpu in range(cores):
        text = read(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq")
        try:
            freq = int(text.strip()) if text else -1
        except ValueError:
            freq = -1
        if freq >= 0 and freq >= best_freq:
            best, best_freq = cpu, freq
    return best
