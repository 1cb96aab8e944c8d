"""Importing a run folder of Arm's SME2 profiling kit into the warehouse.

Arm's kit writes `out_<model>/runs/<platform>/` with `manifest.json`, per-experiment folders of
ETDumps named `<model_stem>_<experiment>_t<threads>.etdump`, and `*_robust_stats.json` (its
robust statistics, with `latencies_ms`). Each ETDump becomes one of our run folders (source
"arm-kit"): the trace is ingested structurally (no program map travels with the kit's output, so
portable operators keep their kernel names), end-to-end samples come from the matching robust
stats file, or from Method::execute when there is none."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

from kit.core import atomic, names
from kit.core.errors import DiskFullError, Sme2Error
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.profile.runrecord import RUN_FILE, RunRecord, now
from kit.stats import categories
from kit.store import connection, runrows, warehouse
from kit.trace import etdump

# <model_stem>_<experiment>_t<threads>: the experiment is "sme2_on"/"sme2_off" (or ends with it).
ETDUMP_NAMES = (
    re.compile(r"^(?P<stem>.+)_(?P<exp>(?:[a-z0-9-]+[_-])?sme2[_-]?(?:on|off))_t(?P<threads>\d+)$", re.I),
    re.compile(r"^(?P<stem>.+)_(?P<exp>[a-z0-9-]+)_t(?P<threads>\d+)$", re.I),
)
DTYPE_OF = {
    "fp32": "fp32",
    "fp16": "fp16",
    "int8": "int8",
    "q8": "int8",
    "int8_dynamic": "int8-dynamic",
    "qd8": "int8-dynamic",
}


def _variant(stem: str) -> tuple[str, str]:
    """'squeeze_sam_xnnpack_int8' -> ('squeeze_sam', 'int8')."""
    m = re.match(r"^(?P<model>[a-z0-9_]+?)_(?:xnnpack|portable)_(?P<dtype>[a-z0-9_]+)$", stem.lower())
    if not m:
        return re.sub(r"[^a-z0-9_]", "_", stem.lower()), "fp32"
    return m.group("model"), DTYPE_OF.get(m.group("dtype"), "fp32")


def discover(folder: Path) -> list[dict]:
    folder = Path(folder)
    if not folder.is_dir():
        raise Sme2Error(
            f"{folder} is not a folder", "pass the kit's runs/<platform>/ folder (the one with manifest.json)"
        )
    dumps = sorted(list(folder.rglob("*.etdump")) + list(folder.rglob("*.etdp")))
    if not dumps:
        raise Sme2Error(
            f"no ETDump (*.etdump) under {folder}", "pass the kit's runs/<platform>/ folder of a finished pipeline run"
        )
    manifest = {}
    for m in [folder / "manifest.json", *folder.parents[:1]]:
        if isinstance(m, Path) and m.name == "manifest.json" and m.exists():
            manifest = read_json(m, "the Arm kit run folder")
            if not isinstance(manifest, dict):
                raise Sme2Error(f"{m} is not a JSON object", "the kit's manifest.json is corrupt: re-run its pipeline")
    found = []
    for d in dumps:
        m = next((m for rx in ETDUMP_NAMES if (m := rx.match(d.stem))), None)
        if not m:
            continue
        stats = next(iter(sorted(d.parent.glob(f"{d.stem}*robust_stats.json"))), None)
        exp = m.group("exp").lower()
        found.append(
            {
                "etdump": d,
                "stem": m.group("stem"),
                "experiment": exp,
                "threads": int(m.group("threads")),
                "sme2": "on" in exp.split("sme2")[-1] if "sme2" in exp else None,
                "robust_stats": stats,
                "manifest": manifest,
            }
        )
    if not found:
        raise Sme2Error(
            f"ETDumps under {folder} are not named <model>_<experiment>_t<threads>.etdump",
            "rename them, or import them one by one with --device/--sme2",
        )
    return found


def import_folder(root: DataRoot, folder: Path, device: str | None = None, warmup: int = 0) -> list[str]:
    """Import every ETDump of a kit run folder, all or nothing; returns the run ids (those imported
    before included, so a re-import returns the same list and adds nothing).

    Every ETDump, robust-stats file and manifest is parsed and every run folder built and read
    back in a staging folder first; only when all of them are valid are the folders committed and
    their rows written to the warehouse in one transaction. If anything fails, no run folder is
    left under runs/ and no row in the warehouse: a half import would break every later
    `sme2 warehouse rebuild` and hide which runs came in."""
    wh = warehouse.Warehouse.at(root)
    rules = categories.load_rules(root.user_categories)
    ids: list[str] = []
    rows: list[runrows.RunRows] = []
    written: list[Path] = []  # run folders this import commits: removed again if a later step fails
    try:
        with contextlib.ExitStack() as stages:
            for item in discover(folder):
                try:
                    run = _read_item(item, device, warmup)
                    if run["run_id"] in ids:  # the same ETDump twice under one folder
                        continue
                    final = root.run_path(run["run_id"])
                    ids.append(run["run_id"])
                    if final.exists():
                        if wh.has_run(run["run_id"]):
                            continue  # imported before
                        with contextlib.suppress(Exception):  # a folder an earlier import left: reuse if whole
                            rows.append(runrows.rows_from_run(final, rules))
                            continue
                    stage = stages.enter_context(atomic.staged_dir(final))
                    _write_run_folder(stage, item, run)
                    rows.append(runrows.rows_from_run(stage, rules).relocated(stage, final))
                    written.append(final)
                except DiskFullError:
                    raise  # names the file and what to do already
                except OSError as e:
                    if connection.is_disk_full(e):
                        raise atomic.disk_full_error(root.runs, e) from e
                    raise _not_imported(item, e, folder) from e
                except Sme2Error as e:
                    raise _not_imported(item, e, folder) from e
                except Exception as e:  # a file no validator anticipated: still nothing imported
                    raise _not_imported(item, e, folder) from e
        # Every stage is now a committed folder; the rows go in as one transaction.
        wh.insert_runs(rows)
    except BaseException:
        for final in written:
            shutil.rmtree(final, ignore_errors=True)
        raise
    return ids


def _not_imported(item: dict, e: Exception, folder: Path) -> Sme2Error:
    """The error of one file of the kit folder, saying that nothing of the folder was imported."""
    why = e.message if isinstance(e, Sme2Error) else f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    hint = f"fix or remove that file, then import {folder} again; nothing of it was imported"
    error_type = type(e) if isinstance(e, Sme2Error) else Sme2Error
    return error_type(f"cannot import {item['etdump']}: {why}", hint)


def _read_item(item: dict, device: str | None, warmup: int) -> dict:
    """Parse one ETDump (and its robust stats) of the kit folder into what its run folder holds."""

    man = item["manifest"]
    dev = names.device_name(
        device
        or re.sub(r"[^a-z0-9_-]", "-", str(man.get("device") or man.get("platform") or "arm-kit").lower()).strip("-")
        or "arm-kit"
    )
    model, dtype = _variant(item["stem"])
    tr = etdump.ingest(item["etdump"], None, warmup=warmup)
    latencies = tr.method_ms.tolist()
    if item["robust_stats"]:
        rs = read_json(item["robust_stats"], "the Arm kit's robust statistics")
        latencies = (rs.get("latencies_ms") if isinstance(rs, dict) else None) or latencies
        if not isinstance(latencies, list):
            raise Sme2Error(
                f"{item['robust_stats']}: 'latencies_ms' is not a list of numbers",
                "the file is corrupt or was edited: re-run the kit's pipeline, or remove the file",
            )
    return {
        "run_id": f"armkit-{item['etdump'].stem}-{dev}-{atomic.sha256_file(item['etdump'])[:8]}",
        "device": dev,
        "sme2": bool(item["sme2"]),
        "model": names.model_name(model),
        "dtype": dtype,
        "iterations": tr.iterations,
        "warmup": warmup,
        "latencies": latencies,
    }


def _write_run_folder(stage: Path, item: dict, run: dict) -> None:
    man = item["manifest"]
    shutil.copy2(item["etdump"], stage / "etdump.etdp")
    if item["robust_stats"]:
        shutil.copy2(item["robust_stats"], stage / item["robust_stats"].name)
    latencies = run["latencies"]
    atomic.write_json(
        stage / "timing.json",
        {
            "runner": "arm-kit",
            "latencies_ms": latencies,
            "warmup_ms": [],
            "load_ms": None,
            "first_inference_ms": latencies[0] if latencies else None,
            "peak_rss_kb": None,
            "checksum": None,
        },
    )
    rec = RunRecord(
        run_id=run["run_id"],
        model=run["model"],
        dtype=run["dtype"],
        backend="xnnpack",
        size=str(man.get("size", "full")),
        target=names.Target(run["device"], run["sme2"]).key,
        device=run["device"],
        sme2=run["sme2"],
        threads=item["threads"],
        runner="arm-kit",
        iterations=run["iterations"],
        warmup=run["warmup"],
        emulated=False,
        platform=str(man.get("platform", "")),
        transport="imported",
        started_at=str(man.get("timestamp") or man.get("date") or now()),
        finished_at=now(),
        versions={k: man[k] for k in ("executorch", "executorch_version") if k in man},
        conditions={
            "imported_from": str(item["etdump"]),
            "experiment": item["experiment"],
            "manifest": man,
        },
        results={"load_ms": None, "first_inference_ms": None, "peak_rss_kb": None},
        source="arm-kit",
        stem=item["etdump"].stem,
    )
    atomic.write_json(stage / RUN_FILE, rec.to_json())
