"""The kernel view: per operator, the kernel family its XNNPACK name reveals (KleidiAI packed types
vs plain), and, from kernel-log runs, the microkernels XNNPACK chose with their ISA."""

from __future__ import annotations

import re

import pandas as pd

from kit.trace.etdump import COMPUTE_KINDS, KLEIDIAI_TAGS, SME2_ONLY_TAGS


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


KERNEL_COLUMNS = ["op_type", "kernel_family", "dtype_tags", "kleidiai", "sme2_only", "microkernel", "isa", "source"]


def kernel_table(op_stats: pd.DataFrame, kernel_log: str | None = None) -> pd.DataFrame:
    """Per operator type: the kernel family its name reveals and, from a kernel-log run's output
    (`kernel_log`), the microkernels XNNPACK chose for it with their ISA."""
    chosen = parse_kernel_log(kernel_log) if kernel_log else None
    rows = []
    for op in op_stats.op_type:
        fam = family(op)
        tags = dtype_tags(op)
        names, isas = microkernels_for(op, chosen) if chosen is not None and not chosen.empty else ([], [])
        rows.append(
            {
                "op_type": op,
                "kernel_family": fam,
                "dtype_tags": ",".join(tags),
                "kleidiai": fam.startswith("kleidiai"),
                "sme2_only": fam == "kleidiai-sme2",
                "microkernel": ", ".join(names) or None,
                "isa": ",".join(isas) or None,
                "source": "kernel-log" if names else "op-name",
            }
        )
    return pd.DataFrame(rows, columns=KERNEL_COLUMNS)


# ---- XNNPACK kernel logs (the kernel-log runner variant: -UXNN_NO_LOGGING -DXNN_LOG_LEVEL=5)

_LOG_LINE = re.compile(r"Using\s+(?:(?P<kind>[A-Za-z0-9_ -]+?)\s+)?micro-?kernel\s+'(?P<name>[^']+)'")
# ISA from the microkernel name's suffix (after "__"); more specific first.
_ISA = (
    ("sme2", "sme2"),
    ("sme", "sme"),
    ("sve2", "sve2"),
    ("sve", "sve"),
    ("i8mm", "neon-i8mm"),
    ("neondot", "neon-dot"),
    ("neonfp16arith", "neon-fp16"),
    ("neonbf16", "neon-bf16"),
    ("neon", "neon"),
    ("aarch64", "neon"),
    ("avx512amx", "avx512-amx"),
    ("avx512vnni", "avx512-vnni"),
    ("avx512", "avx512"),
    ("avxvnni", "avx-vnni"),
    ("avx2", "avx2"),
    ("fma3", "avx2"),
    ("avx", "avx"),
    ("sse", "sse"),
    ("wasm", "wasm"),
    ("rvv", "rvv"),
    ("scalar", "scalar"),
)


def isa_of(microkernel: str) -> str:
    """'xnn_pf32_gemm_minmax_ukernel_32x32__neonsme2' -> 'sme2'."""
    suffix = microkernel.split("__", 1)[1].lower() if "__" in microkernel else microkernel.lower()
    return next((isa for key, isa in _ISA if key in suffix), "unknown")


def parse_kernel_log(text: str) -> pd.DataFrame:
    """`Using <kind> microkernel '<name>'` lines (in any log prefix) to rows: kind, microkernel,
    isa, and how many times it was chosen."""
    rows = [
        {
            "kind": (m.group("kind") or "").strip().lower() or "unknown",
            "microkernel": m.group("name"),
            "isa": isa_of(m.group("name")),
        }
        for m in _LOG_LINE.finditer(text)
    ]
    df = pd.DataFrame(rows, columns=["kind", "microkernel", "isa"])
    if df.empty:
        return df.assign(count=pd.Series(dtype=int))
    return df.groupby(["kind", "microkernel", "isa"], as_index=False).size().rename(columns={"size": "count"})


# Which logged microkernel kinds serve which XNNPACK operator ("Convolution (NHWC, PF32) IGEMM").
_KINDS_BY_OP = (
    (("Convolution", "Deconvolution"), "DWConv", ("dwconv",)),
    (("Convolution", "Deconvolution"), "IGEMM", ("igemm", "dqigemm")),
    (("Convolution",), "GEMM", ("gemm", "dqgemm", "qp8gemm", "qp8gemm_bl")),
    (("Fully Connected", "Batch Matrix Multiply"), "", ("gemm", "dqgemm", "qp8gemm", "qp8gemm_bl")),
    (("Transpose",), "", ("transposec", "transposev", "copy")),
    (("Copy", "Constant Pad", "Slice", "Concatenate"), "", ("copy",)),
    (("Max Pooling",), "", ("maxpool",)),
    (("Average Pooling", "Global Average Pooling"), "", ("avgpool", "reduce")),
    (("Resize Bilinear",), "", ("ibilinear",)),
    (("Softmax",), "", ("raddstoreexpminusmax", "reduce", "binary")),
)
# Operator dtype tag -> the dtype that starts the microkernel's name (xnn_<dtype>_...).
_KERNEL_DTYPE = {"QC8": "qs8", "QDU8": "qdu8"}


def _kernel_dtype(microkernel: str) -> str:
    """'xnn_pqs8_qc8w_gemm_minmax_ukernel_32x32c4__neonsme2' -> 'pqs8'."""
    parts = microkernel.split("_")
    return parts[1] if len(parts) > 1 and parts[0] == "xnn" else ""


def microkernels_for(op_type: str, chosen: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The logged microkernels (and their ISAs) that can serve one operator: the right kind (igemm
    for an IGEMM convolution, gemm for a fully connected...) and the operator's activation dtype."""
    kinds: tuple[str, ...] = ()
    for ops, marker, ks in _KINDS_BY_OP:
        if op_type.startswith(ops) and marker in op_type:
            kinds = ks
            break
    if not kinds:
        return [], []
    tags = dtype_tags(op_type)
    dtype = _KERNEL_DTYPE.get(tags[0], tags[0].lower()) if tags else ""
    hits = chosen[chosen.kind.isin(kinds)]
    if dtype:
        hits = hits[hits.microkernel.map(_kernel_dtype) == dtype]
    return sorted(set(hits.microkernel)), sorted(set(hits.isa))


def kernel_log_of(texts) -> str:
    """The kernel-log lines of a run's logs (the runner's stderr), or '' when it printed none."""
    return "\n".join(line for text in texts for line in (text or "").splitlines() if "microkernel" in line)


def side_by_side(log_on: str, log_off: str) -> pd.DataFrame:
    """Microkernels chosen with SME2 on vs off, per kind."""
    on, off = parse_kernel_log(log_on), parse_kernel_log(log_off)
    agg = lambda df: df.groupby("kind").agg(
        microkernels=("microkernel", lambda s: ", ".join(sorted(set(s)))),
        isa=("isa", lambda s: ",".join(sorted(set(s)))),
    )  # noqa: E731
    return agg(on).join(agg(off), lsuffix="_on", rsuffix="_off", how="outer").fillna("-").reset_index()


# ---- Does a trace agree with its SME2 label?

# Activation dtypes whose conv/GEMM kernels switch to an SME2-only KleidiAI type (PF32, PQS8) when
# the CPU has SME2. fp16 (PF16) and dynamic int8 (QP8) do not prove SME2 either way.
SME2_PROVABLE_DTYPES = ("fp32", "int8")


def label_problem(op_types, sme2: bool, dtype: str) -> str | None:
    """Why a run's operator names contradict its SME2 flag, or None when they agree.

    SME2 off: any SME2-only kernel (PF32, PQS8) proves SME2 was used. SME2 on, fp32/int8: conv/GEMM
    operators that all show plain kernels prove it was not. Other dtypes cannot be judged."""
    ops = sorted({str(o) for o in op_types})
    sme2_only = [o for o in ops if family(o) == "kleidiai-sme2"]
    if not sme2 and sme2_only:
        return (
            f"the trace shows SME2-only kernels under an sme2-off label: {', '.join(sme2_only[:4])}"
            f"{' ...' if len(sme2_only) > 4 else ''} (PF32/PQS8 are chosen only when the CPU runs SME2)"
        )
    compute = [o for o in ops if o.startswith(COMPUTE_KINDS) and family(o) != "portable"]
    if sme2 and dtype in SME2_PROVABLE_DTYPES and compute and not sme2_only:
        return (
            f"the trace shows no SME2 kernel under an sme2-on label: its {dtype} conv/GEMM operators are all "
            f"plain ({', '.join(compute[:4])}{' ...' if len(compute) > 4 else ''}); with SME2 they are PF32/PQS8"
        )
    return None
