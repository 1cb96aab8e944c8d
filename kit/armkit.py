"""Importing a run folder of Arm's SME2 profiling kit into the warehouse.

Arm's kit writes `out_<model>/runs/<platform>/` with `manifest.json`, per-experiment folders of
ETDumps named `<model_stem>_<experiment>_t<threads>.etdump`, and `*_robust_stats.json` (its
robust statistics, with `latencies_ms`). Each ETDump becomes one of our run folders (source
"arm-kit"): the trace is ingested structurally (no program map travels with the kit's output, so
portable operators keep their kernel names), end-to-end samples come from the matching robust
stats file, or from Method::execute when there is none."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from kit import atomic, names, warehouse
from kit.errors import Sme2Error
from kit.home import DataRoot
from kit.runrecord import RUN_FILE, RunRecord, now

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
            manifest = json.loads(m.read_text())
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
    """Import every ETDump of a kit run folder; returns the run ids added to the warehouse."""
    from kit import trace

    ids = []
    for item in discover(folder):
        man = item["manifest"]
        dev = names.device_name(
            device
            or re.sub(r"[^a-z0-9_-]", "-", str(man.get("device") or man.get("platform") or "arm-kit").lower()).strip(
                "-"
            )
            or "arm-kit"
        )
        sme2 = bool(item["sme2"])
        model, dtype = _variant(item["stem"])
        target = names.Target(dev, sme2)
        tr = trace.ingest(item["etdump"], None, warmup=warmup)
        execute = tr.method_ms.tolist()
        latencies = execute
        if item["robust_stats"]:
            rs = json.loads(item["robust_stats"].read_text())
            latencies = rs.get("latencies_ms") or execute
        run_id = f"armkit-{item['etdump'].stem}-{dev}-{atomic.sha256_file(item['etdump'])[:8]}"
        folder_out = root.runs / run_id
        if not folder_out.exists():
            with atomic.staged_dir(folder_out) as stage:
                shutil.copy2(item["etdump"], stage / "etdump.etdp")
                if item["robust_stats"]:
                    shutil.copy2(item["robust_stats"], stage / item["robust_stats"].name)
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
                    run_id=run_id,
                    model=names.model_name(model),
                    dtype=dtype,
                    backend="xnnpack",
                    size=str(man.get("size", "full")),
                    target=target.key,
                    device=dev,
                    sme2=sme2,
                    threads=item["threads"],
                    runner="arm-kit",
                    iterations=tr.iterations,
                    warmup=warmup,
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
        warehouse.ingest_run(root, folder_out)
        ids.append(run_id)
    return ids
