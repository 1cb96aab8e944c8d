"""A profiling run as files: `runs/<run_id>/` holds everything that explains its numbers, so the
warehouse can be rebuilt from the folders alone.

    run.json            the record: variant, target, size, threads, runner, every condition
    timing.json         the timing-only run (per-iteration end-to-end latency)
    etdump.etdp         the ETDump run's trace (+ etdump.json, its runner result)
    program_map.json    the program's instruction map (copied from the export)
    export_meta.json    the export's meta (copied)
    <stem>_robust_stats.json, <stem>_categories.csv, analysis.json
    Arm's kit files     <stem>_exec_all_runs_timeline.csv, <stem>_exec_run0_timeline.csv,
                        <stem>_exec_ops_stats.csv, <stem>_category_summary.csv,
                        <stem>_operator_details.csv, <stem>_e2e_latency.csv, <stem>_other_top_ops.csv,
                        <stem>_kernels.csv, manifest.json, metrics.json, analysis_summary.json,
                        <model_stem>_pipeline_summary.json/.md (kit.profile.armkit)
    *.log               runner logs
"""

from __future__ import annotations

import re

import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.core import names
from kit.core.errors import NameError_, RunFolderError
from kit.core.jsonfile import read_json

RUN_FILE = "run.json"
# Fields a run record cannot do without (the rest have defaults).
REQUIRED = (
    "run_id",
    "model",
    "dtype",
    "backend",
    "size",
    "target",
    "device",
    "sme2",
    "threads",
    "runner",
    "iterations",
    "warmup",
)
# Fields that become path components, partition keys or warehouse keys, and their validators.
NAME_FIELDS = {
    "run_id": lambda v: names.file_component("run id", v),
    "model": names.model_name,
    "dtype": names.dtype,
    "backend": names.backend,
    "size": names.size_name,
    "device": names.device_name,
    "runner": names.runner_name,
    "stem": lambda v: names.file_component("file stem", v, allow_empty=True),
}
TEXT_FIELDS = (
    "platform",
    "transport",
    "runner_sha256",
    "runner_recipe",
    "pte_sha256",
    "started_at",
    "finished_at",
    "source",
)
# results entries the warehouse stores as numbers.
NUMERIC_RESULTS = ("load_ms", "first_inference_ms", "peak_rss_kb")


def read_timing(folder: Path) -> dict:
    """timing.json with its per-iteration latencies checked: a non-empty list of finite numbers >= 0."""
    path = Path(folder) / "timing.json"
    timing = read_json(path, f"the run in {Path(folder)}")
    lat = timing.get("latencies_ms") if isinstance(timing, dict) else None
    if not isinstance(lat, list) or not lat or not all(_is_number(x) and 0 <= x < 1e12 for x in lat):
        raise RunFolderError(
            f"{path}: 'latencies_ms' must be a non-empty list of finite numbers >= 0",
            "the timing run's file is corrupt or was edited: re-run the profile",
        )
    return timing


def _is_number(x) -> bool:
    """A finite JSON number of a sane size (JSON allows NaN, Infinity and 400-digit integers)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e300 and x == x


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
    # The package's folder when it is not the models folder (registry.ModelPackage.source_id): a
    # same-named package from elsewhere is another program with its own history.
    package_id: str = ""

    @property
    def variant(self) -> str:
        return f"{self.model}-{self.dtype}" + ("" if self.backend == "xnnpack" else f"-{self.backend}")

    @property
    def run_key(self) -> str:
        """Runs with the same key measure the same thing; a newer one supersedes an older one."""
        key = f"{self.variant}|{self.target}|{self.size}|t{self.threads}|{self.runner}"
        return key + (f"|pkg-{self.package_id}" if self.package_id else "")

    def to_json(self) -> dict:
        self.validate(f"run record {self.run_id!r}")  # never write a record that would not load
        return {**asdict(self), "variant": self.variant, "run_key": self.run_key}

    def validate(self, source: str) -> "RunRecord":
        """Check every field like a CLI argument: values read from disk become paths (reports/
        <variant>/, <stem>_*.csv), partition keys and warehouse keys. Raises a RunFolderError
        naming `source` (the run.json file) and the field."""

        def bad(name: str, why: str, hint: str = ""):
            return RunFolderError(
                f"{source}: field {name!r} = {getattr(self, name)!r} is refused: {why}",
                hint or "this run folder was edited or corrupted: re-run the profile, or delete the folder",
            )

        for name, check in NAME_FIELDS.items():
            try:
                check(getattr(self, name))
            except NameError_ as e:
                raise bad(name, e.message, e.hint) from e
        for name in ("sme2", "emulated"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be true or false")
        for name, low in (("threads", 1), ("iterations", 0), ("warmup", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 1_000_000_000:
                raise bad(name, f"must be an integer >= {low}")
        try:
            target = names.Target.parse(self.target) if isinstance(self.target, str) else None
        except NameError_ as e:
            raise bad("target", e.message, e.hint) from e
        if target is None or target != names.Target(self.device, self.sme2):
            raise bad("target", f"does not match device {self.device!r} and sme2 = {self.sme2}")
        for name in TEXT_FIELDS:
            if not isinstance(getattr(self, name), str):
                raise bad(name, "must be a string")
        if not isinstance(self.package_id, str) or not re.fullmatch(r"([0-9a-f]{8})?", self.package_id):
            raise bad("package_id", "must be empty or 8 hex digits")
        for name in ("versions", "conditions", "results"):
            if not isinstance(getattr(self, name), dict):
                raise bad(name, "must be a JSON object")
        if not all(isinstance(v, str) for v in self.versions.values()):
            raise bad("versions", "values must be strings")
        if not isinstance(self.conditions.get("cpu_model", ""), (str, type(None))):
            raise bad("conditions", "cpu_model must be a string")
        for key in NUMERIC_RESULTS:
            value = self.results.get(key)
            if value is not None and not _is_number(value):
                raise bad("results", f"{key} must be a number or null")
        return self

    @classmethod
    def load(cls, folder: Path) -> "RunRecord":
        """Read and validate `<folder>/run.json`; any problem is a RunFolderError naming the file."""
        path = Path(folder) / RUN_FILE
        raw = read_json(path, f"the run in {Path(folder)}")
        if not isinstance(raw, dict):
            raise RunFolderError(f"{path} is not a JSON object", "this run folder is corrupt: re-run the profile")
        missing = [k for k in REQUIRED if k not in raw]
        if missing:
            raise RunFolderError(
                f"{path} lacks the field(s) {', '.join(missing)}", "this run folder is corrupt: re-run the profile"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known}).validate(str(path))


def new_run_id(variant: str, target: str, size: str, threads: int) -> str:
    return (
        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{variant}-{target}-{size}-t{threads}-{secrets.token_hex(3)}"
    )


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
