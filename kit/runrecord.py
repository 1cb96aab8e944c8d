"""A profiling run as files: `runs/<run_id>/` holds everything that explains its numbers, so the
warehouse can be rebuilt from the folders alone.

    run.json            the record: variant, target, size, threads, runner, every condition
    timing.json         the timing-only run (per-iteration end-to-end latency)
    etdump.etdp         the ETDump run's trace (+ etdump.json, its runner result)
    program_map.json    the program's instruction map (copied from the export)
    export_meta.json    the export's meta (copied)
    <stem>_robust_stats.json, <stem>_exec_ops_stats.csv, <stem>_categories.csv, analysis.json
    *.log               runner logs
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

RUN_FILE = "run.json"


@dataclass
class RunRecord:
    run_id: str
    model: str
    dtype: str
    backend: str
    size: str
    target: str
    device: str
    sme2: bool
    threads: int
    runner: str
    iterations: int
    warmup: int
    emulated: bool = False
    platform: str = ""
    transport: str = "local"
    runner_sha256: str = ""
    runner_recipe: str = ""
    pte_sha256: str = ""
    started_at: str = ""
    finished_at: str = ""
    versions: dict = field(default_factory=dict)
    conditions: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)  # load_ms, first_inference_ms, peak_rss_kb, checksum, e2e medians
    source: str = "profile"  # or "arm-kit" for imported runs
    stem: str = ""

    @property
    def variant(self) -> str:
        return f"{self.model}-{self.dtype}" + ("" if self.backend == "xnnpack" else f"-{self.backend}")

    @property
    def run_key(self) -> str:
        """Runs with the same key measure the same thing; a newer one supersedes an older one."""
        return f"{self.variant}|{self.target}|{self.size}|t{self.threads}|{self.runner}"

    def to_json(self) -> dict:
        return {**asdict(self), "variant": self.variant, "run_key": self.run_key}

    @classmethod
    def load(cls, folder: Path) -> "RunRecord":
        raw = json.loads((Path(folder) / RUN_FILE).read_text())
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def new_run_id(variant: str, target: str, size: str, threads: int) -> str:
    return (
        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{variant}-{target}-{size}-t{threads}-{secrets.token_hex(3)}"
    )


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
