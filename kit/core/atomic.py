"""Atomic artifact writes: temp file (or folder) in the same directory, then rename.

A reader never sees a half-written file, and a failure leaves the earlier version intact."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from kit.core import lifetime
from kit.core.errors import DiskFullError


def write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically. A full disk is a DiskFullError naming the file, and the
    temp file is gone: the earlier version (if any) stays, nothing half-written appears."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        if _is_disk_full(e):
            raise disk_full_error(path, e) from e
        raise
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(e, OSError) and _is_disk_full(e):
            raise disk_full_error(path, e) from e
        raise
    return path


def _is_disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(path: Path, e: OSError) -> DiskFullError:
    """The error for a write that ran out of space: names the file and says what to do. Still an
    OSError, so callers that tolerate a failed write (keeping a log, say) keep tolerating it."""
    return DiskFullError(
        f"disk full at {path}: {e.strerror or e}",
        f"free space on that file system (df -h {Path(path).parent}) or point --home / $SME2_HOME at a"
        " bigger disk, then re-run; nothing half-written was left behind",
    )


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh staging folder next to `final`; on success it replaces `final` in one rename.

    On any exception the staging folder is removed and `final` (if it existed) is untouched. A kill
    (SIGKILL, power loss) cannot run that cleanup: the folder names carry the owner's tag, and the
    next staged_dir (or reclaim_stale) in the same parent removes what dead owners left."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    reclaim_stale(final.parent)
    owner = lifetime.Owner.me().tag()
    stage = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{owner}.", suffix=STAGING_SUFFIX))
    stage.chmod(0o777 & ~_umask())
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.{owner}{OLD_SUFFIX}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    try:
        os.replace(stage, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".old"
_OWNER = r"(?P<owner>\d+-\d+-[0-9a-z]+-\d+-[0-9a-f]+)"
_STAGING_RE = re.compile(r"^\.(?P<name>.+)\." + _OWNER + r"\.[A-Za-z0-9_]+\.staging$")
_OLD_RE = re.compile(r"^\.(?P<name>.+)\." + _OWNER + r"\.old$")
# Names written before owner tags existed: no owner to ask, so only age tells they are abandoned.
_LEGACY_STAGING_RE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.staging$")
_LEGACY_OLD_RE = re.compile(r"^\.(?P<name>.+)\.\d+\.old$")
LEGACY_MAX_AGE_S = 24 * 3600


def reclaim_stale(parent: Path) -> list[Path]:
    """Remove the staging and `.old` folders in `parent` whose owner process is dead (killed mid-write).

    A `.old` folder whose final folder is missing means the kill landed between staged_dir's two
    renames: it is renamed back, restoring the previous version. Folders of live owners, and of
    owners this process cannot judge (another host or container), are left alone. Returns the
    paths removed or restored."""
    parent = Path(parent)
    try:
        with os.scandir(parent) as it:
            names = [e.name for e in it if e.name.startswith(".") and e.name.endswith((STAGING_SUFFIX, OLD_SUFFIX))]
    except OSError:  # no folder yet, or unreadable: nothing this process could reclaim
        return []
    reclaimed = []
    for name in names:
        path = parent / name
        try:
            if not path.is_dir() or path.is_symlink():
                continue
            match = _STAGING_RE.match(name) or _OLD_RE.match(name)
            if match:
                owner = lifetime.Owner.parse(match["owner"])
                if owner is None or owner.alive():
                    continue
            else:
                match = _LEGACY_STAGING_RE.match(name) or _LEGACY_OLD_RE.match(name)
                if not match or time.time() - path.lstat().st_mtime < LEGACY_MAX_AGE_S:
                    continue
            final = parent / match["name"]
            if name.endswith(OLD_SUFFIX) and not final.exists():
                os.replace(path, final)
            else:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:  # another process reclaimed or restored it first
            continue
        reclaimed.append(path)
    return reclaimed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
