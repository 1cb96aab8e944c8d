"""The program map: what each instruction of an ExecuTorch program is, and where it came from.

Built once at export from the in-memory ETRecord (or later from a saved ETRecord), saved as
`program_map.json` beside the .pte. Trace ingestion uses it to name portable operators, to attach
nn.Module paths and source lines, and to prove an ETDump belongs to the program (Inspector does
not check that)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.core import atomic
from kit.core.errors import RunFolderError
from kit.core.jsonfile import read_json

FILE_NAME = "program_map.json"


@dataclass
class Instruction:
    index: int
    kind: str  # "kernel" (a portable/optimized operator), "delegate" (a DELEGATE_CALL), "other"
    name: str  # operator name ("aten::native_layer_norm.out") or backend id ("XnnpackBackend")
    op_types: list[str] = field(default_factory=list)  # edge ops behind it (all ops of a delegate)
    modules: list[str] = field(default_factory=list)  # nn.Module paths ("encoder.norm1"), in order
    module_types: list[str] = field(default_factory=list)  # their classes ("LayerNorm")
    source: str = ""  # innermost model-code frame, "file.py:123 code"


@dataclass
class ProgramMap:
    pte_sha256: str
    instructions: list[Instruction]
    # Per delegate instruction, its compute operators as "Kind:class" (e.g. "Convolution:qs8"),
    # recorded from the export's own check run; CPU-independent (PF32 and F32 are both f32).
    signature: dict[str, list[str]] = field(default_factory=dict)

    @property
    def traced(self) -> dict[int, Instruction]:
        """Instructions that emit a profiling event: kernel calls and delegate calls."""
        return {i.index: i for i in self.instructions if i.kind in ("kernel", "delegate")}

    def save(self, folder: Path) -> Path:
        return atomic.write_json(
            Path(folder) / FILE_NAME,
            {
                "pte_sha256": self.pte_sha256,
                "signature": self.signature,
                "instructions": [asdict(i) for i in self.instructions],
            },
        )

    @classmethod
    def load(cls, folder: Path) -> "ProgramMap":
        path = Path(folder) / FILE_NAME
        raw = read_json(path, f"the folder {Path(folder)}")
        try:
            pmap = cls(raw["pte_sha256"], [Instruction(**i) for i in raw["instructions"]], raw.get("signature", {}))
            # What trace ingestion relies on: integer indices, string kinds/names, lists of names.
            ok = isinstance(pmap.signature, dict) and all(
                isinstance(i.index, int) and isinstance(i.kind, str) and isinstance(i.name, str)
                for i in pmap.instructions
            )
        except (KeyError, TypeError, AttributeError) as e:
            ok, e_text = False, str(e)
        else:
            e_text = "unexpected field types"
        if not ok:
            raise RunFolderError(
                f"{path} is not a valid program map ({e_text})",
                "it was edited or corrupted: re-export the model (sme2 export) or re-run the profile",
            )
        return pmap


def _forward_plan(pte_bytes: bytes):
    from executorch.exir._serialize._program import deserialize_pte_binary

    plans = deserialize_pte_binary(pte_bytes).program.execution_plan
    plan = next((p for p in plans if p.name == "forward"), None)
    if plan is None:
        raise ValueError(f"the program has no method 'forward' (methods: {', '.join(p.name for p in plans) or 'none'})")
    return plan


def input_specs(pte_bytes: bytes) -> list[dict]:
    """The forward method's inputs as the program declares them: [{"shape", "scalar_type"}], with
    the ExecuTorch ScalarType code (6 = float32, 5 = float16, ...). Read from the flatbuffer alone:
    nothing is executed. Raises ValueError for a non-tensor input or a file that is no program."""
    plan = _forward_plan(pte_bytes)
    specs = []
    for n, index in enumerate(plan.inputs):
        val = plan.values[index].val
        if type(val).__name__ != "Tensor":
            raise ValueError(f"input {n} of forward is a {type(val).__name__}, not a tensor")
        specs.append({"shape": [int(d) for d in val.sizes], "scalar_type": int(val.scalar_type)})
    return specs


def _instructions_from_pte(pte_bytes: bytes) -> list[Instruction]:
    plan = _forward_plan(pte_bytes)
    out = []
    for idx, ins in enumerate(plan.chains[0].instructions):
        args, kind = ins.instr_args, type(ins.instr_args).__name__
        if kind == "KernelCall":
            op = plan.operators[args.op_index]
            out.append(Instruction(idx, "kernel", f"{op.name}.{op.overload}" if op.overload else op.name))
        elif kind == "DelegateCall":
            out.append(Instruction(idx, "delegate", plan.delegates[args.delegate_index].id))
        else:
            out.append(Instruction(idx, "other", kind))
    return out


def _short_source(stack_trace: str | None) -> str:
    """The innermost frame that is not inside torch itself: the model line that made the op."""
    if not stack_trace:
        return ""
    lines = stack_trace.strip().splitlines()
    best = ""
    for i, line in enumerate(lines):
        line = line.strip()
        if line.startswith("File ") and "/torch/" not in line:
            parts = line.split('"')
            fname = Path(parts[1]).name if len(parts) > 1 else "?"
            lineno = line.rsplit("line ", 1)[-1].split(",")[0]
            code = lines[i + 1].strip() if i + 1 < len(lines) else ""
            best = f"{fname}:{lineno} {code}"
    return best


def build(pte_bytes: bytes, pte_sha256: str, etrecord=None) -> ProgramMap:
    """Instruction kinds from the .pte; op types, modules and source lines from the ETRecord."""
    instructions = _instructions_from_pte(pte_bytes)
    if etrecord is not None and etrecord.edge_dialect_program is not None:
        _enrich(instructions, etrecord)
    return ProgramMap(pte_sha256, instructions)


def etrecord_mismatch(pte_bytes: bytes, etrecord) -> str:
    """Why an ETRecord does not describe this program ("" when it does): its debug-handle map must
    name exactly the program's traced instructions, and each portable kernel's handles must lead
    to an edge op of that kernel (Inspector accepts any ETRecord silently)."""
    instructions = _instructions_from_pte(pte_bytes)
    traced = {i.index for i in instructions if i.kind in ("kernel", "delegate")}
    handle_map = (getattr(etrecord, "_debug_handle_map", None) or {}).get("forward")
    if not handle_map:
        return "it holds no debug-handle map for method forward"
    mapped = {int(k) for k in handle_map}
    if mapped != traced:
        return f"it maps {len(mapped)} instructions, the program has {len(traced)} traced ones"
    probe = [Instruction(i.index, i.kind, i.name) for i in instructions if i.kind == "kernel"]
    if probe and etrecord.edge_dialect_program is not None:
        _enrich(probe, etrecord)
        for ins in probe:
            base = ins.name.split("::")[-1].split(".")[0]
            if not any(base in t for t in ins.op_types):
                return f"instruction {ins.index} runs {ins.name}, its ETRecord entry is {ins.op_types or 'empty'}"
    return ""


def _enrich(instructions: list[Instruction], etrecord) -> None:
    edge = etrecord.edge_dialect_program
    gm = edge.graph_module if hasattr(edge, "graph_module") else edge
    by_handle: dict[int, list] = {}
    for node in gm.graph.nodes:
        h = node.meta.get("debug_handle")
        if node.op == "call_function" and h is not None and not str(node.target).startswith("<built-in"):
            by_handle.setdefault(int(h), []).append(node)
    handle_map = (etrecord._debug_handle_map or {}).get("forward", {})
    for ins in instructions:
        if ins.kind not in ("kernel", "delegate"):
            continue
        handles = handle_map.get(str(ins.index), handle_map.get(ins.index))
        if handles is None:
            continue
        for h in handles if isinstance(handles, (list, tuple)) else [handles]:
            for node in by_handle.get(int(h), []):
                _add_node(ins, node)
        if ins.kind == "kernel":
            # Decompositions share debug handles: keep the op types that name this kernel.
            base = ins.name.split("::")[-1].split(".")[0]
            ins.op_types = [t for t in ins.op_types if base in t] or ins.op_types


def _add_node(ins: Instruction, node) -> None:
    ins.op_types.append(str(node.target) if not hasattr(node.target, "__name__") else node.target.__name__)
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path, cls = list(stack.values())[-1]
        cls_name = cls.rsplit(".", 1)[-1] if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
        if path and path not in ins.modules:
            ins.modules.append(path)
            ins.module_types.append(cls_name)
    if not ins.source:
        ins.source = _short_source(node.meta.get("stack_trace"))


# ---------------------------------------------------------------- the program's graph


@dataclass
class GraphNode:
    """A node of the edge-dialect ExportedProgram the ETRecord holds (before partitioning): the
    graph Model Explorer's PyTorch adapter shows, whose node ids are these names."""

    name: str
    op: str  # placeholder, call_function, output
    target: str  # "aten.convolution.default", "getitem", ...
    handle: int | None  # debug handle: which instructions it became
    module: str = ""  # innermost nn.Module path ("stem_norm")
    module_type: str = ""  # its class ("GroupNorm")

    @property
    def base(self) -> str:
        """'convolution' for aten.convolution.default, 'quantize_per_tensor' for
        quantized_decomposed.quantize_per_tensor.default."""
        parts = self.target.split(".")
        return parts[1] if len(parts) >= 3 else parts[0]


@dataclass
class EdgeGraph:
    nodes: list[GraphNode]
    handles: dict[int, list[int]]  # instruction index -> debug handles of the nodes behind it

    @property
    def names(self) -> set[str]:
        return {n.name for n in self.nodes}


def edge_graph(etrecord_path: Path) -> EdgeGraph:
    """The edge program's nodes and the instruction -> debug handle map, from a saved ETRecord."""
    from executorch.devtools.etrecord import parse_etrecord

    try:
        rec = parse_etrecord(str(etrecord_path))
    except Exception as e:  # a corrupt or foreign file: say which one
        raise RunFolderError(
            f"cannot read the ETRecord {etrecord_path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            "re-export the model (sme2 export --force)",
        ) from e
    edge = rec.edge_dialect_program
    if edge is None:
        raise RunFolderError(f"the ETRecord {etrecord_path} holds no edge program", "re-export the model")
    gm = edge.graph_module if hasattr(edge, "graph_module") else edge
    nodes = []
    for node in gm.graph.nodes:
        target = getattr(node.target, "__name__", None) or str(node.target)
        stack = node.meta.get("nn_module_stack") or {}
        module, module_type = "", ""
        if stack:
            module, cls = list(stack.values())[-1]
            module_type = cls.rsplit(".", 1)[-1] if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
        h = node.meta.get("debug_handle")
        nodes.append(GraphNode(node.name, node.op, target, int(h) if isinstance(h, int) else None, module, module_type))
    raw = (rec._debug_handle_map or {}).get("forward", {})
    handles = {int(k): [int(x) for x in (v if isinstance(v, (list, tuple)) else [v])] for k, v in raw.items()}
    return EdgeGraph(nodes, handles)
