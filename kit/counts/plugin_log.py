"""The counting plugin's output (kit/counts/sme2_counts.c): every clock read of the emulated program
with the instruction counters at that moment, and each vCPU's totals at exit.

Instruction classes come from the A64 encoding, decided once per instruction when QEMU translates
it; each class also has the part retired in streaming mode (between SMSTART and SMSTOP)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kit.core.errors import TraceError

# The plugin's classes, in its column order (sme2_counts.c: enum cls).
CLASSES = (
    "sme_outer",
    "sme_za",
    "sme_mem",
    "sve",
    "sve_mem",
    "simd",
    "simd_mem",
    "fp",
    "int",
    "int_mem",
    "branch",
    "system",
    "other",
)
SME_CLASSES = ("sme_outer", "sme_za", "sme_mem")
VECTOR_CLASSES = ("sve", "sve_mem", "simd", "simd_mem")  # SVE and Advanced SIMD, outside streaming mode
MEMORY_CLASSES = ("sme_mem", "sve_mem", "simd_mem", "int_mem")
CLOCK_MONOTONIC = 1
FORMAT = "# sme2-counts 1"


@dataclass
class ClockLog:
    """Clock reads in the order the guest made them. `counts` and `streaming` are (reads x classes)
    cumulative counters of the reading vCPU; `bytes` (reads x 2) its bytes loaded and stored."""

    vcpu: np.ndarray
    clock: np.ndarray
    ns: np.ndarray
    counts: np.ndarray
    streaming: np.ndarray
    bytes: np.ndarray
    totals: dict[int, dict]  # vCPU -> {"counts": [...], "streaming": [...], "bytes": [loaded, stored]}
    source: str

    def __len__(self) -> int:
        return len(self.ns)

    def of(self, vcpu: int, clock: int = CLOCK_MONOTONIC) -> "ClockLog":
        keep = (self.vcpu == vcpu) & (self.clock == clock)
        return ClockLog(
            self.vcpu[keep],
            self.clock[keep],
            self.ns[keep],
            self.counts[keep],
            self.streaming[keep],
            self.bytes[keep],
            self.totals,
            self.source,
        )


def read(path: Path) -> ClockLog:
    """Parse a counts file; a missing, truncated or foreign file is a TraceError naming it."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise TraceError(
            f"cannot read the instruction counts {path}: {e.strerror}",
            "re-run the counting run (sme2 profile ... --counts); the plugin writes the file when QEMU exits",
        ) from e
    n = len(CLASSES)
    if len(lines) < 2 or lines[0] != FORMAT or lines[1].split()[1:] != list(CLASSES):
        raise TraceError(
            f"{path} is not a counts file of this version (expected '{FORMAT}' and classes {', '.join(CLASSES)})",
            "rebuild the counting plugin (sme2 setup --counts) and re-run the counting run",
        )
    rows, totals = [], {}
    width = 2 * n + 2
    for lineno, line in enumerate(lines[2:], start=3):
        f = line.split() or [""]
        try:
            if f[0] == "R" and len(f) == 4 + width:
                rows.append([int(x) for x in f[1:]])
                continue
            if f[0] == "T" and len(f) == 2 + width:
                v = [int(x) for x in f[2:]]
                totals[int(f[1])] = {"counts": v[:n], "streaming": v[n : 2 * n], "bytes": v[2 * n :]}
                continue
        except ValueError:
            pass
        raise TraceError(f"{path} line {lineno} is malformed: {line[:80]!r}", "re-run the counting run")
    if not totals:
        raise TraceError(f"{path} has no totals: QEMU did not exit normally", "re-run the counting run")
    a = np.array(rows, dtype=np.int64).reshape(-1, 3 + width)
    return ClockLog(
        vcpu=a[:, 0],
        clock=a[:, 1],
        ns=a[:, 2],
        counts=a[:, 3 : 3 + n],
        streaming=a[:, 3 + n : 3 + 2 * n],
        bytes=a[:, 3 + 2 * n :],
        totals=totals,
        source=str(path),
    )
