"""The GEMM/convolution kernel view, SME2 on beside SME2 off: per compute operator of a model
variant on one device, the XNNPACK operator type and the microkernel (with its ISA) each side ran.

Microkernel names come from kernel-log runs (the source recipe's kernel-log runner; kernels table
source 'kernel-log'); without them the view still shows the operator types (PF32 vs F32). The two
sides are matched by what the operator computes (kind, algorithm, activation dtype class), which
stays the same whichever kernel the CPU picked: 'Convolution (NHWC, PF32) IGEMM' with SME2 and
'Convolution (NHWC, F32) IGEMM' without are one row."""

from __future__ import annotations

import pandas as pd

from kit.core.errors import WarehouseError
from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse
from kit.trace.etdump import COMPUTE_KINDS, compute_class

COLUMNS = [
    "device",
    "threads",
    "operator",
    "on_op_type",
    "on_microkernel",
    "on_isa",
    "off_op_type",
    "off_microkernel",
    "off_isa",
    "on_ms",
    "off_ms",
]


def operator_key(op_type: str) -> str:
    """'Convolution (NHWC, PF32) IGEMM' -> 'Convolution IGEMM f32'."""
    kind, _, cls = compute_class(op_type).partition(":")
    algorithm = op_type.rsplit(")", 1)[-1].strip()
    return " ".join(p for p in (kind, algorithm, cls) if p)


def _side(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.assign(operator=rows.op_type.map(operator_key))
    return rows.groupby("operator", as_index=False).agg(
        op_type=("op_type", lambda s: ", ".join(sorted(set(s)))),
        microkernel=("microkernel", lambda s: ", ".join(sorted({m for v in s.dropna() for m in v.split(", ")})) or "-"),
        isa=("isa", lambda s: ",".join(sorted({i for v in s.dropna() for i in v.split(",")})) or "-"),
        ms=("median_ms", "sum"),
    )


def side_by_side(wh: Warehouse, variant: str, device: str | None = None) -> pd.DataFrame:
    """One row per compute operator (conv, GEMM, batch matmul) and device/threads: SME2 on vs off.
    Kernel-log runs are preferred when a key has both (they name the microkernels)."""
    runs = stored_runs.variant_runs(wh, variant, device)
    if runs.empty:
        raise WarehouseError(
            f"no runs of {variant}{' on ' + device if device else ''} in the warehouse",
            "profile it first: sme2 profile --model ... --dtype ... --target <device>.sme2-on,<device>.sme2-off "
            "(add --kernel-log for microkernel names)",
        )
    out = []
    for (dev, threads), group in runs.groupby(["device", "threads"], sort=True):
        picked = {}
        for sme2 in (True, False):
            side = group[group.sme2 == sme2]
            if side.empty:
                continue
            logged = side[side.runner.str.endswith("-xnnlog")]
            picked[sme2] = (logged if not logged.empty else side).run_id.iloc[0]
        if not picked:
            continue
        sides = {}
        for sme2, run_id in picked.items():
            rows = stored_runs.kernel_times(wh, run_id)
            rows = rows[rows.op_type.str.startswith(COMPUTE_KINDS)]
            sides[sme2] = _side(rows).set_index("operator")
        on = sides.get(True, pd.DataFrame(columns=["op_type", "microkernel", "isa", "ms"]))
        off = sides.get(False, pd.DataFrame(columns=["op_type", "microkernel", "isa", "ms"]))
        for op in sorted(set(on.index) | set(off.index)):
            a = on.loc[op] if op in on.index else None
            b = off.loc[op] if op in off.index else None
            out.append(
                {
                    "device": dev,
                    "threads": int(threads),
                    "operator": op,
                    "on_op_type": a.op_type if a is not None else "-",
                    "on_microkernel": a.microkernel if a is not None else "-",
                    "on_isa": a.isa if a is not None else "-",
                    "off_op_type": b.op_type if b is not None else "-",
                    "off_microkernel": b.microkernel if b is not None else "-",
                    "off_isa": b.isa if b is not None else "-",
                    "on_ms": round(float(a.ms), 4) if a is not None else None,
                    "off_ms": round(float(b.ms), 4) if b is not None else None,
                }
            )
    return pd.DataFrame(out, columns=COLUMNS)
