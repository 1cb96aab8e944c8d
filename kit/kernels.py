"""The kernel view: per operator, the kernel family its XNNPACK name reveals (KleidiAI packed types
vs plain), and, from kernel-log runs, the microkernels XNNPACK chose with their ISA."""

from __future__ import annotations

import re

import pandas as pd

from kit.trace import KLEIDIAI_TAGS, SME2_ONLY_TAGS


def dtype_tags(op_type: str) -> list[str]:
    m = re.search(r"\(([^)]*)\)", op_type)
    return [t.strip() for t in m.group(1).split(",")][1:] if m else []  # first is the layout


def family(op_type: str) -> str:
    """'kleidiai-sme2' (PF32/PQS8: chosen only with SME2), 'kleidiai' (PF16/QP8), 'xnnpack' (plain
    XNNPACK kernels) or 'portable' (a non-delegated operator)."""
    if "::" in op_type:
        return "portable"
    tags = dtype_tags(op_type)
    if any(t in SME2_ONLY_TAGS for t in tags):
        return "kleidiai-sme2"
    if any(t in KLEIDIAI_TAGS for t in tags):
        return "kleidiai"
    return "xnnpack"


def kernel_table(op_stats: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for op in op_stats.op_type:
        fam = family(op)
        tags = dtype_tags(op)
        rows.append({"op_type": op, "kernel_family": fam, "dtype_tags": ",".join(tags), "kleidiai": fam.startswith("kleidiai"), "sme2_only": fam == "kleidiai-sme2", "microkernel": None, "isa": None, "source": "op-name"})
    return pd.DataFrame(rows, columns=["op_type", "kernel_family", "dtype_tags", "kleidiai", "sme2_only", "microkernel", "isa", "source"])
