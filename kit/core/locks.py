"""Inter-process locks on files under the data root (runner builds, measurement windows, device
set-up), through `filelock`: waits are bounded when a timeout is given and the error names the lock."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import filelock

from kit.core.errors import Sme2Error


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float | None = None, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if needed). `timeout_s=None` waits for ever."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=-1 if timeout_s is None else timeout_s)
    try:
        lock.acquire()
    except filelock.Timeout as e:
        raise Sme2Error(
            f"{what or path.name} is held by another process for more than {timeout_s:.0f}s ({path})",
            "wait for the other sme2/Dagster run to finish, or stop it",
        ) from e
    try:
        yield
    finally:
        lock.release()
