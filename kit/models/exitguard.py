"""Model code may not end the process that runs it.

A package's import, build or forward runs inside the CLI (or an orchestrator step). If it calls
`sys.exit(0)` or `os._exit(0)` the command would end with status 0 having done nothing, and a
caller would take that as success. While model code runs, both are turned into a
ModelPackageError naming the model and what it was doing.

This is a guard against mistakes, not a sandbox: code that kills its own process by other means
(a signal, a native crash) is caught where model code runs in a child process (parallel exports),
whose exit without a result is reported as a failure there."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator

from kit.core.errors import ModelPackageError

_REAL_EXIT = os._exit
_OWNER_PID = os.getpid()
_lock = threading.Lock()
_depth = 0  # guards active in this process (threads may export concurrently)
_active: list[tuple[str, str, str]] = []  # (model, doing, where) of the innermost guards


def _refuse_exit(code: int = 0) -> None:
    # A process forked from here must still be able to end itself normally.
    if os.getpid() != _OWNER_PID or not _active:
        _REAL_EXIT(code)
    model, doing, where = _active[-1]
    raise ModelPackageError(f"model {model!r} called os._exit({code}) while {doing}", _hint(where))


def _hint(where: str) -> str:
    return f"remove the exit call from {where}: a model package must return or raise, never end the process"


@contextlib.contextmanager
def model_code(model: str, doing: str, where: str) -> Iterator[None]:
    """Run model code; `sys.exit`/`os._exit` inside it become a ModelPackageError.

    model: the package name; doing: what the code was doing ("importing its package", "exporting
    tiny_seg-fp32"); where: the file or folder to fix, named in the hint."""
    global _depth, _OWNER_PID
    entry = (model, doing, where)
    with _lock:
        if _depth == 0:
            _OWNER_PID = os.getpid()
            os._exit = _refuse_exit
        _depth += 1
        _active.append(entry)
    try:
        yield
    except SystemExit as e:
        raise ModelPackageError(f"model {model!r} called sys.exit({e.code!r}) while {doing}", _hint(where)) from None
    finally:
        with _lock:
            _active.remove(entry)
            _depth -= 1
            if _depth == 0:
                os._exit = _REAL_EXIT


IMPORT_TIMEOUT_S = 60.0  # a package's import that takes longer is hung (a sleep, a loop, a blocked read)


@contextlib.contextmanager
def deadline(model: str, doing: str, where: str, seconds: float | None = None) -> Iterator[None]:
    """Stop model code that runs longer than `seconds` (default IMPORT_TIMEOUT_S, read at the call)
    with a ModelPackageError (SIGALRM: on the main thread of a POSIX process; elsewhere the code runs
    unbounded, as before)."""
    seconds = IMPORT_TIMEOUT_S if seconds is None else seconds
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(signum, frame):
        raise ModelPackageError(f"model {model!r} was still {doing} after {seconds:g} s: it hangs", _hint(where))

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
