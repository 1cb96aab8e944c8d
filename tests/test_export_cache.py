"""The machine-wide export cache (kit/export/cache.py): a finished export is restored into another
data root instead of lowered again, byte for byte; a damaged entry is ignored and replaced; --force
and checkpoints bypass it; $SME2_EXPORT_CACHE=off turns it off; the key covers every input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kit.core.home import DataRoot
from kit.export import batch, cache, exporter, numerics
from kit.models import registry
from tests.modelpkg import conv_package

REPO = Path(__file__).resolve().parents[1]
IDENTITY = {
    "package_hash": "a" * 64,
    "checkpoint": "",
    "size_params": {"resolution": 64},
    "torch": "2.13.0",
    "executorch": "1.5.1",
    "python": "3.11.7",
    "model": "tiny_seg",
    "dtype": "fp32",
    "backend": "xnnpack",
    "size": "small",
    "tolerance": 1e-3,
}


def test_key_changes_with_every_input():
    base = cache.key(IDENTITY)
    assert cache.key(dict(reversed(list(IDENTITY.items())))) == base  # order does not matter
    for field, other in (
        ("package_hash", "b" * 64),
        ("size_params", {"resolution": 32}),
        ("executorch", "1.6.0"),
        ("dtype", "int8"),
        ("backend", "portable"),
        ("tolerance", 1e-2),
    ):
        assert cache.key({**IDENTITY, field: other}) != base, field


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "c"))
    assert cache.folder() == tmp_path / "c"
    monkeypatch.setenv(cache.ENV, "off")
    assert cache.folder() is None and cache.lookup(IDENTITY) is None and cache.store(tmp_path, IDENTITY) is None
    monkeypatch.delenv(cache.ENV)
    assert cache.folder() == cache.DEFAULT.expanduser()


@pytest.mark.slow
def test_a_cached_export_is_restored_byte_for_byte_and_a_damaged_one_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    tiny = registry.get("toy", conv_package(tmp_path / "models"))  # lowers in a second: it lowers three times
    cold = exporter.export_variant(tiny, "fp32", "small", DataRoot.resolve(tmp_path / "a"))
    assert "cache" not in cold.meta
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]

    warm_root = DataRoot.resolve(tmp_path / "b")
    warm = exporter.export_variant(tiny, "fp32", "small", warm_root)
    assert warm.meta["cache"]["entry"] == str(entry)
    assert warm.pte.read_bytes() == cold.pte.read_bytes()
    assert (warm.folder / "program_map.json").read_bytes() == (cold.folder / "program_map.json").read_bytes()
    assert warm.meta["exported_at"] == cold.meta["exported_at"] and warm.meta["identity"] == cold.meta["identity"]
    assert exporter.export_variant(tiny, "fp32", "small", warm_root).meta == warm.meta  # the data root's copy
    assert numerics.check_program(warm)["passed"]  # the restored program runs and still matches

    # A damaged entry (its program no longer matches its sha256) is not used, and is replaced.
    pte = entry / cold.meta["pte"]
    pte.write_bytes(pte.read_bytes()[:-16] + b"\0" * 16)
    fresh = exporter.export_variant(tiny, "fp32", "small", DataRoot.resolve(tmp_path / "c"))
    assert "cache" not in fresh.meta
    assert cache.lookup(_identity(fresh)) == entry

    # --force lowers again even with a good entry.
    forced = exporter.export_variant(tiny, "fp32", "small", warm_root, force=True)
    assert "cache" not in forced.meta and forced.meta["exported_at"] >= fresh.meta["exported_at"]


def _identity(exp) -> dict:
    meta = exp.meta
    return {
        **meta["identity"],
        "model": meta["model"],
        "dtype": meta["dtype"],
        "backend": meta["backend"],
        "size": meta["size"],
        "tolerance": meta["numerical_check"]["tolerance"],
    }


@pytest.mark.slow  # lowers in worker processes: ~35 s on 2 cores (full tier)
def test_export_many_returns_current_exports_as_they_are(exports, home):
    """Up-to-date exports are settled in the calling process (no worker is started for them)."""
    jobs = [("tiny_seg", d, "small") for d in ("fp32", "int8")]
    out = batch.export_many(jobs, home, workers=2)
    assert {job[1]: exp.meta for job, exp in out.items()} == {d: exports[d].meta for d in ("fp32", "int8")}


_EXPORT_IN_A_PROCESS = """
import json, sys
from kit.core.home import DataRoot
from kit.export import exporter
from kit.models import registry
exp = exporter.export_variant(registry.get("toy", sys.argv[2]), "fp32", "small", DataRoot.resolve(sys.argv[1]))
print(json.dumps("cache" in exp.meta))
"""


@pytest.mark.slow
def test_two_processes_asking_for_one_export_lower_it_once(tmp_path, monkeypatch):
    """Parallel test workers or two runs of one sensor tick: the second waits on the key's lock and
    restores the entry the first one stored, instead of lowering the same program again."""
    monkeypatch.setenv(cache.ENV, str(tmp_path / "cache"))
    env = dict(os.environ)
    models = conv_package(tmp_path / "models")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _EXPORT_IN_A_PROCESS, str(tmp_path / name), str(models)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    restored = []
    for p in procs:
        out, _ = p.communicate(timeout=900)
        assert p.returncode == 0
        restored.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(restored) == [False, True]  # one lowered, the other restored the cache entry
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert cache.lookup(json.loads((entry / "export_meta.json").read_text())["cache_identity"]) == entry
