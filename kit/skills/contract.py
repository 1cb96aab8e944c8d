"""What the skill checks share: a Problem (one missing file, key or out-of-range value, with the
command that fixes it), the Scope a check looks at (validated names), and the artifact contract of
exports, runners, run folders and reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from kit.core import names
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Target, Variant
from kit.export import artifact
from kit.profile.runrecord import RunRecord
from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse

DEFAULT_MODEL = "tiny_seg"
DEFAULT_DTYPES = ("fp32", "int8")
HOST_TARGET = "host.sme2-off"

# Versions the platform is pinned to (pyproject.toml); any other torch pulls a multi-GB CUDA build.
PINNED = {"torch": "2.13.0", "executorch": "1.5.1"}
REQUIRED_PACKAGES = ("dagster", "duckdb", "pandas", "altair", "vl-convert-python", "typer", "cmake", "ninja")

# A run folder: the record, the timing run, the ETDump, and the Arm-kit named statistics.
RUN_FILES = ("run.json", "timing.json", "etdump.etdp", "analysis.json")
RUN_STEM_FILES = ("_robust_stats.json", "_exec_ops_stats.csv", "_categories.csv")
ROBUST_KEYS = (
    "count",
    "mean_ms",
    "median_ms",
    "std_dev_ms",
    "cv_percent",
    "min_ms",
    "max_ms",
    "percentiles",
    "latencies_ms",
    "name",
    "operators",
)
OPS_COLUMNS = ("op_type", "category", "instances", "median_ms", "kernel_hint")
EXPORT_KEYS = artifact.REQUIRED_META + (
    "inputs",
    "outputs",
    "delegate_partitions",
    "delegated_ops",
    "non_delegated_op_names",
    "export_seconds",
)
RUNNER_KEYS = ("recipe", "platform", "executorch_version", "binary_sha256", "built_at")
REPORT_FILES = ("report.md", "report.html")
# Operators explain at most this share of Method::execute (the rest is runtime overhead between
# instructions; a little over 1 is timer granularity on tiny programs).
COVERAGE_RANGE = (0.0, 1.05)


@dataclass(frozen=True)
class Problem:
    """One thing a skill's outputs lack: `kind` (file, key, value, run, package, tool), `what` (the
    path relative to the data root, the key or the name), a sentence, and the command that fixes it."""

    kind: str
    what: str
    message: str
    hint: str = ""

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Scope:
    """What a check looks at. Every name is validated before it becomes a path or a query."""

    model: str = DEFAULT_MODEL
    dtypes: list[str] = field(default_factory=lambda: list(DEFAULT_DTYPES))
    targets: list[str] | None = None  # None: the targets `sme2 pipeline` measures by default
    size: str = "small"  # export-model: the size `sme2 export` makes by default
    emulator: bool = True  # env-setup: the emulated SME2 pair must be set up
    baseline: Path | None = None  # regression-check: a known-good run folder (default: the bundled one)
    max_slowdown: float = 1.5  # regression-check: e2e median ratio allowed on the same hardware

    def __post_init__(self):
        names.model_name(self.model)
        self.dtypes = [names.dtype(d) for d in self.dtypes]
        if not self.dtypes:
            raise Sme2Error("no dtype given", f"use one or more of {', '.join(names.DTYPES)}")
        if self.targets is not None:
            self.targets = [Target.parse(t).key for t in self.targets]
        names.size_name(self.size)
        ok = isinstance(self.max_slowdown, (int, float)) and 1.0 <= float(self.max_slowdown) <= 100.0
        if not ok:
            raise Sme2Error(f"max slowdown {self.max_slowdown!r} is out of range", "use a ratio from 1.0 to 100")

    @property
    def variants(self) -> list[Variant]:
        return [Variant(self.model, d) for d in self.dtypes]


def newest_run(wh: Warehouse, variant: str, target: str, size: str | None = None, threads: int | None = None):
    """The newest current run (a row of current_runs) of a variant on a target, optionally of one
    size and thread count; None when there is none (or no warehouse yet)."""
    if not wh.path.exists():
        return None
    return stored_runs.newest_current_run(wh, variant, target, size, threads)


def run_files(run_dir: Path) -> list[Path]:
    """The files a run folder must hold (the run's own stem names the Arm-kit statistics)."""
    stem = RunRecord.load(run_dir).stem
    return [run_dir / f for f in RUN_FILES] + [run_dir / f"{stem}{suffix}" for suffix in RUN_STEM_FILES]


def op_table(path: Path) -> pd.DataFrame:
    """The operator rows of a run's `*_exec_ops_stats.csv`. The file starts with Arm's kit's
    columns, whose Method::execute and DELEGATE_CALL rows carry no operator statistics (no op_type)."""
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "op_type" not in table.columns:
        return table
    return table[table.op_type.notna()].reset_index(drop=True)


def rel(root: DataRoot, path: Path) -> str:
    """A path as the reader sees it: relative to the data root when inside it."""
    try:
        return str(Path(path).relative_to(root.path))
    except ValueError:
        return str(path)
