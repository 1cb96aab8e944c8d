"""Child processes that die with their parent, and owner tags that tell a live writer from a dead one.

`kill -9` of `sme2 profile` must not leave its runner behind: an orphaned runner keeps its pinned
core busy while the next run measures on that core. Linux delivers a chosen signal to a child when
its parent dies (prctl PR_SET_PDEATHSIG); every long-running child sets it to SIGKILL, and then
checks that its parent is still the one that started it, which closes the race where the parent
died between fork and prctl.

Caveat, from prctl(2): the signal is sent when the *thread* that forked the child exits, not the
process. A child started from a short-lived thread (a thread pool's worker that is recycled) would
be killed early. Every launcher in the kit forks and waits for the child in the same call on the
same thread (`run_local`, `subprocess.run`, ProcessPoolExecutor.submit inside its `with`), so the
forking thread lives exactly as long as the wait; keep it that way when adding launchers.

Owner tags (pid, process start time, boot id, pid namespace, host) name the process that owns a
temporary folder, so a later start can tell a folder whose writer was killed from one being
written right now (kit.core.atomic.reclaim_stale)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1


def _load_prctl():
    """libc's prctl, resolved once in the parent: the child after fork only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.prctl
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_PRCTL = _load_prctl()


def set_parent_death_signal(expected_parent: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """In the current process: ask the kernel for `sig` when the parent dies; if the parent is
    already gone (we were reparented), die now. False where prctl does not exist (not Linux)."""
    if _PRCTL is None:
        return False
    _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os.kill(os.getpid(), signal.SIGKILL)  # the parent died before prctl took effect
    return True


def die_with_parent():
    """A `preexec_fn` for subprocess: the child gets SIGKILL when this process's calling thread
    exits (see the module note on threads). Call it in the parent, right before Popen/run."""
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no imports, no allocation-heavy work
        set_parent_death_signal(parent)

    return preexec if _PRCTL is not None else None


def worker_initializer(parent: int) -> None:
    """ProcessPoolExecutor(initializer=..., initargs=(os.getpid(),)): pool workers die with the pool's owner."""
    set_parent_death_signal(parent)


# ---------------------------------------------------------------- owner tags


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:12]
    except OSError:
        return "0"


def _pid_namespace() -> str:
    """The pid namespace's inode: pids of another container on the same kernel mean nothing here."""
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "0"
    return "".join(c for c in link if c.isdigit()) or "0"


def _host() -> str:
    """A short digest of the host name: a data root shared over NFS sees other machines' pids."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); None if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        return 0  # exists but unreadable: treat as alive, never reclaim on a guess
    # The command name (field 2) may hold spaces and parentheses: split after its closing ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return 0


@dataclass(frozen=True)
class Owner:
    """The process that owns a temporary artifact. pid + start time defeat pid reuse, the boot id
    defeats reboots; the host and pid namespace say whether this process can judge at all."""

    pid: int
    start: int
    boot: str
    pidns: str
    host: str

    @classmethod
    def me(cls) -> "Owner":
        return cls(os.getpid(), _start_ticks(os.getpid()) or 0, _boot_id(), _pid_namespace(), _host())

    def tag(self) -> str:
        return f"{self.pid}-{self.start}-{self.boot}-{self.pidns}-{self.host}"

    @classmethod
    def parse(cls, tag: str) -> "Owner | None":
        parts = tag.split("-")
        if len(parts) != 5 or not parts[0].isdigit() or not parts[1].isdigit():
            return None
        return cls(int(parts[0]), int(parts[1]), *parts[2:])

    def alive(self) -> bool:
        """Could the owner still be running? Errs on the side of alive when it cannot tell."""
        if self.host != _host() or self.pidns != _pid_namespace():
            return True  # another machine or container: its pids cannot be checked from here
        if self.boot != _boot_id():
            return False  # written before the last reboot
        if os.path.isdir("/proc/self"):
            start = _start_ticks(self.pid)
            if start is None:
                return False
            return start == 0 or self.start == 0 or start == self.start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
