"""A real profiled run folder made cheaply (tiny_seg fp32 at size small, run with the Python
runtime, so no native runner build), once per test session, for the tests that copy run folders
and then craft or corrupt their files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kit.core.home import DataRoot

_made: dict[str, Path] = {}


def real_run_folder(home: DataRoot) -> Path:
    """A finished run folder under home's runs/ (made on first use, then reused)."""
    key = str(home.path)
    if key not in _made:
        from kit.devices import inventory
        from kit.export import exporter
        from kit.models import registry
        from kit.profile import session

        exp = exporter.export_variant(registry.get("tiny_seg"), "fp32", "small", home)
        host = inventory.resolve("host.sme2-off", home)
        run = session.run_session(
            home, exp, host, session.Measurement(threads=1, iterations=3, warmup=1, runner_kind="pybind")
        )
        _made[key] = run.run_dir
    return _made[key]


def clone_run(src: Path, root: DataRoot, name: str, **fields) -> Path:
    """A copy of a run folder as root's runs/<name>/, its run.json given run_id = name and then
    `fields` (written as given, run_id included: the point is to craft values)."""
    dst = root.runs / name
    shutil.copytree(src, dst)
    rec = json.loads((dst / "run.json").read_text())
    rec.update({"run_id": name, **fields})
    (dst / "run.json").write_text(json.dumps(rec))
    return dst


def later_night(
    src: Path, root: DataRoot, suffix: str, started_at: str | None = None, device: str | None = None
) -> Path:
    """A copy of a real run folder as <run id>-<suffix> under root's runs/ (same key: a later night
    of the same run), optionally on another device (its key follows) or at another start time."""
    rec = json.loads((src / "run.json").read_text())
    dst = root.runs / f"{rec['run_id']}-{suffix}"
    shutil.copytree(src, dst)
    rec["run_id"] = dst.name
    if device:
        rec["device"], rec["target"] = device, f"{device}.sme2-off"
        rec["run_key"] = rec["run_key"].replace("host.sme2-off", rec["target"])
    if started_at:
        rec["started_at"] = started_at
    (dst / "run.json").write_text(json.dumps(rec))
    return dst


def files_under(folder: Path) -> set[Path]:
    return {p for p in Path(folder).rglob("*")}
