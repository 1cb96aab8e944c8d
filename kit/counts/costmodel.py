"""Estimated cycles from instruction counts: the one place `est_cycles` is computed.

The model (kit/counts/costmodel.toml, or a file of the user's with the same keys) gives, per
instruction class, how many retire per cycle outside and inside streaming mode, and the bytes per
cycle memory delivers; est_cycles = max(compute cycles, memory cycles). Estimates from emulation,
never hardware times: every place that shows them says so."""

from __future__ import annotations

import hashlib
from kit.core.compat import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kit.core.errors import Sme2Error
from kit.counts.plugin_log import CLASSES

DEFAULT = Path(__file__).with_name("costmodel.toml")
LABEL = "estimated cycles (from emulated instruction counts; not hardware time)"


@dataclass(frozen=True)
class CostModel:
    name: str
    description: str
    per_cycle: dict[str, float]
    streaming_per_cycle: dict[str, float]
    memory_bytes_per_cycle: float
    digest: str  # of the file's content: which version of a model produced a number
    path: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.digest[:8]})"


def load(path: Path | None = None) -> CostModel:
    """A cost model file; every class needs a positive rate. Errors name the file and the key."""
    path = Path(path or DEFAULT)
    try:
        text = path.read_text()
        doc = tomllib.loads(text)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise Sme2Error(f"cannot read the cost model {path}: {e}", f"fix it, or start from {DEFAULT}") from e

    def rate(table: str, key: str, default: float | None = None) -> float:
        entry = doc.get(table, {}).get(key, default)
        value = entry.get("value") if isinstance(entry, dict) else entry
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise Sme2Error(
                f"cost model {path}: [{table}] {key} must be a positive number of instructions (or bytes) per cycle, "
                f"not {value!r}",
                f"see {DEFAULT} for every key and its source",
            )
        return float(value)

    per_cycle = {c: rate("per_cycle", c) for c in CLASSES}
    # Classes a model leaves out of streaming mode keep their normal rate (scalar control code).
    streaming = {c: rate("streaming_per_cycle", c, doc.get("per_cycle", {}).get(c)) for c in CLASSES}
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise Sme2Error(f"cost model {path} has no name", 'add: name = "<core>"')
    return CostModel(
        name=name.strip(),
        description=str(doc.get("description", "")),
        per_cycle=per_cycle,
        streaming_per_cycle=streaming,
        memory_bytes_per_cycle=rate("memory", "bytes_per_cycle"),
        digest=hashlib.sha256(text.encode()).hexdigest(),
        path=str(path),
    )


def estimate(counts: pd.DataFrame, model: CostModel) -> pd.DataFrame:
    """est_cycles, est_compute_cycles and est_memory_cycles for rows with the class columns
    (kit.counts.attribution.COUNT_COLUMNS)."""
    compute = np.zeros(len(counts))
    for c in CLASSES:
        streaming = counts[f"streaming_{c}"].to_numpy(np.float64)
        outside = counts[c].to_numpy(np.float64) - streaming
        compute += outside / model.per_cycle[c] + streaming / model.streaming_per_cycle[c]
    memory = (counts["bytes_loaded"].to_numpy(np.float64) + counts["bytes_stored"].to_numpy(np.float64)) / (
        model.memory_bytes_per_cycle
    )
    return pd.DataFrame(
        {
            "est_cycles": np.maximum(compute, memory).round(),
            "est_compute_cycles": compute.round(),
            "est_memory_cycles": memory.round(),
        },
        index=counts.index,
    )
