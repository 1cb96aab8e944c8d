"""A cache of finished exports shared across data roots and runs, keyed by what determines them.

Lowering a model is the slow part of the pipeline (minutes for the case-study models) and its
output depends only on: the model package's files, the dtype, the size parameters, the backend,
the torch / executorch / Python versions, the export tolerances and this code's export format.
So a finished export folder is copied to `$SME2_EXPORT_CACHE/<key>/` (default
`~/.cache/sme2/exports`; `off` disables it), and the next export of the same key anywhere on this
machine (another data root, a fresh CI clone, the next test session) copies it back instead of
lowering again. A cold cache is just a normal export.

Exports with a checkpoint are not cached (the weights are the user's data, outside the key). An
entry is used only if its meta describes the same identity and its .pte matches its recorded
sha256; anything else is ignored (and replaced by the next export). Writing the cache is best
effort: a full or read-only cache folder never fails an export."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from kit.core import atomic, environment
from kit.core.locks import file_lock

ENV = "SME2_EXPORT_CACHE"
DEFAULT = Path("~/.cache/sme2/exports")
# Bump when what an export folder holds changes (files, meta keys, program map), so that entries
# written by older code are not restored.
EXPORT_FORMAT = 1
OFF = ("", "0", "off", "no", "none", "false")


def folder() -> Path | None:
    """The cache folder, or None when $SME2_EXPORT_CACHE turns it off."""
    value = environment.get(ENV)
    if value is not None and value.strip().lower() in OFF:
        return None
    return Path(value or DEFAULT).expanduser()


def key(identity: dict) -> str:
    """The cache key of an export identity (every input that determines the export's bytes)."""
    text = json.dumps({**identity, "export_format": EXPORT_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def lookup(identity: dict) -> Path | None:
    """The cached export folder for `identity`, if there is a whole, matching one."""
    base = folder()
    if base is None:
        return None
    entry = base / key(identity)
    try:
        meta = json.loads((entry / "export_meta.json").read_text())
        pte = entry / meta["pte"]
        if meta.get("cache_identity") == _jsonable(identity) and atomic.sha256_file(pte) == meta["pte_sha256"]:
            return entry
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


@contextlib.contextmanager
def exclusive(identity: dict | None) -> Iterator[None]:
    """Hold the machine-wide lock of one cache key while its export is made, so that a second
    process asking for the same key waits for the entry instead of lowering it again. Best effort,
    like the cache: no lock for an export that is not cached (identity None), when the cache is off
    or when its folder cannot be written."""
    base = folder() if identity is not None else None
    with contextlib.ExitStack() as held:
        if base is not None:
            try:
                held.enter_context(file_lock(base / f".{key(identity)}.lock"))
            except OSError:
                pass
        yield


def store(export_folder: Path, identity: dict) -> Path | None:
    """Copy a finished export folder into the cache (atomically: a reader sees a whole entry or
    none). Returns the entry, or None when the cache is off or cannot be written."""
    base = folder()
    if base is None:
        return None
    entry = base / key(identity)
    try:
        base.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(dir=base, prefix=f".{entry.name}.", suffix=".tmp"))
        try:
            for f in Path(export_folder).iterdir():
                if f.is_file():
                    shutil.copy2(f, stage / f.name)
            meta_path = stage / "export_meta.json"
            meta = json.loads(meta_path.read_text())
            meta["cache_identity"] = _jsonable(identity)
            meta_path.write_text(json.dumps(meta, indent=2))
            if entry.exists():  # another process stored the same key first, or a stale entry
                shutil.rmtree(entry, ignore_errors=True)
            os.replace(stage, entry)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return entry
    except OSError:
        return None


def _jsonable(identity: dict) -> dict:
    return json.loads(json.dumps(identity, sort_keys=True, default=str))
