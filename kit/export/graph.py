"""What lowering made of a model, as files a person or a tool can read:

    graph.json            the lowered program's graph: every node (op, inputs, shape, dtype, module
                          path), the operator counts (delegated or not), and each delegate partition
                          with the nodes it swallowed
    lowering_report.md    the verbose lowering report (`sme2 export --mode debug`): delegation
                          summary, per-operator table, partitions, what stayed on portable kernels,
                          and what the partitioner logged while lowering

Both are written from the in-memory edge program at export time; nothing here runs the program."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from kit.core import atomic

GRAPH_FILE = "graph.json"
REPORT_FILE = "lowering_report.md"
# Loggers whose messages explain partitioning decisions (XNNPACK's partitioner and config checks).
LOWERING_LOGGERS = ("executorch.backends.xnnpack", "executorch.exir.backend")


def _op_name(target) -> str:
    """'aten.convolution.default' for an edge op, the function name for Python builtins."""
    name = getattr(target, "__name__", None) or str(target)
    return name.split(":")[0].strip().removeprefix("<EdgeOpOverload").strip()


def _tensor_meta(val) -> dict:
    if hasattr(val, "shape") and hasattr(val, "dtype"):
        return {"shape": [int(d) if str(d).isdigit() else str(d) for d in val.shape], "dtype": str(val.dtype)}
    if isinstance(val, (list, tuple)):
        metas = [_tensor_meta(v) for v in val]
        return {"outputs": metas} if any(metas) else {}
    return {}


def _nodes(graph) -> list[dict]:
    out = []
    for index, node in enumerate(graph.nodes):
        item = {
            "index": index,
            "name": node.name,
            "op": node.op,
            "target": node.target if isinstance(node.target, str) else _op_name(node.target),
            "inputs": [a.name for a in node.all_input_nodes],
            **_tensor_meta(node.meta.get("val")),
        }
        stack = node.meta.get("nn_module_stack") or {}
        if stack:
            item["module"] = list(stack.values())[-1][0]
        if node.meta.get("debug_handle") is not None:
            item["debug_handle"] = node.meta["debug_handle"]
        out.append(item)
    return out


def describe(edge_manager, delegation: dict) -> dict:
    """graph.json's content for a lowered EdgeProgramManager; `delegation` is the exporter's
    delegation summary (counts and names per operator)."""
    gm = edge_manager.exported_program().graph_module
    nodes = _nodes(gm.graph)
    delegates = []
    for node in gm.graph.nodes:
        if node.op == "call_function" and _op_name(node.target) == "executorch_call_delegate":
            lowered_name = node.args[0].target if hasattr(node.args[0], "target") else str(node.args[0])
            lowered = getattr(gm, lowered_name, None)
            inner = getattr(lowered, "original_module", None)
            inner_nodes = _nodes(inner.graph) if inner is not None else []
            for n in nodes:
                if n["name"] == node.name:
                    n["delegate"] = lowered_name
            delegates.append(
                {
                    "name": lowered_name,
                    "call_node": node.name,
                    "backend": getattr(lowered, "backend_id", ""),
                    "ops": sorted({n["target"] for n in inner_nodes if n["op"] == "call_function"}),
                    "nodes": inner_nodes,
                }
            )
    return {
        "format": "sme2-graph/1",
        "nodes": nodes,
        "ops": delegation.get("by_operator", {}),
        "delegate_partitions": delegates,
        "summary": {
            "nodes": len(nodes),
            "delegate_partitions": len(delegates),
            "delegated_ops": delegation.get("delegated_ops"),
            "non_delegated_ops": delegation.get("non_delegated_ops"),
            "non_delegated_op_names": delegation.get("non_delegated_op_names", []),
        },
    }


def save(folder: Path, graph: dict) -> Path:
    return atomic.write_json(Path(folder) / GRAPH_FILE, graph)


@contextlib.contextmanager
def capture_lowering_log():
    """Collect what the lowering loggers say (at DEBUG) while the block runs; yields a list that
    holds the lines afterwards."""
    lines: list[str] = []
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
    saved = []
    for name in LOWERING_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    try:
        yield lines
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
        lines.extend(line for line in buffer.getvalue().splitlines() if line.strip())


def lowering_report(graph: dict, meta: dict, log_lines: list[str]) -> str:
    """The verbose lowering report, Markdown."""
    s = graph["summary"]
    lines = [
        f"# Lowering report: {meta['variant']} ({meta['size']})",
        "",
        f"- backend: {meta['backend']}; XNNPACK partitioner: {'on' if meta.get('xnnpack_delegation', True) else 'off'}",
        f"- graph nodes: {s['nodes']}; delegate partitions: {s['delegate_partitions']}",
        f"- operators delegated: {s['delegated_ops']}; left on portable kernels: {s['non_delegated_ops']}",
        f"- quantization: {meta.get('quantization') or 'none'}",
        "",
        "## Operators",
        "",
        "| operator | delegated | not delegated |",
        "|---|---:|---:|",
    ]
    for op, counts in sorted(graph["ops"].items()):
        lines.append(f"| {op} | {counts['delegated']} | {counts['non_delegated']} |")
    lines += ["", "## Delegate partitions", ""]
    for d in graph["delegate_partitions"]:
        compute = [n for n in d["nodes"] if n["op"] == "call_function"]
        lines.append(f"- **{d['name']}** ({d['backend']}): {len(compute)} nodes: {', '.join(d['ops'])}")
    if not graph["delegate_partitions"]:
        lines.append("- none: every operator runs on portable kernels")
    lines += ["", "## Left on portable kernels", ""]
    portable = [
        n
        for n in graph["nodes"]
        if n["op"] == "call_function" and "delegate" not in n and n["target"] not in ("getitem",)
    ]
    for n in portable:
        where = f" (module {n['module']})" if n.get("module") else ""
        lines.append(f"- `{n['name']}`: {n['target']}{where}")
    if not portable:
        lines.append("- none")
    lines += ["", "## Partitioner log", ""]
    lines += [f"    {line}" for line in log_lines] or ["(the partitioner logged nothing)"]
    return "\n".join(lines) + "\n"
