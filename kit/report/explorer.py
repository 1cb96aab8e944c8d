"""Per-node profiling data for Google's Model Explorer (the `ai-edge-model-explorer` package).

The graph: the edge-dialect ExportedProgram saved in the run's ETRecord (before partitioning), as
Model Explorer's PyTorch ExportedProgram adapter shows it: one graph, id `graph`, node ids the FX
node names (`aten_convolution_default_1`, `aten_native_group_norm_default`, ...).

Model Explorer's node-data format (model_explorer/node_data_builder.py): a JSON object keyed by
graph id; each value has `results` mapping node ids to `{"value": ..., "bgColor"?, "textColor"?}`,
and optionally `thresholds` ([{value, bgColor, textColor?}], upper bounds) or `gradient`
([{stop 0..1, bgColor?, textColor?}], stops 0 and 1 present). One value per node per file, so a
run gives several files: median ms, share of Method::execute (%), category, and the SME2 speedup
(off / on) when the run has an SME2 pair on hardware.

Attribution of timed events to nodes, from the warehouse's op_events of the run:
- a portable operator's event is its instruction's node (the node behind the instruction's debug
  handle whose op the kernel implements);
- XNNPACK operators inside a delegate carry no per-node handle (the XNNPACK delegate records
  none), so they are matched by kind and order: the k-th `Convolution` event of a delegate is its
  k-th convolution node, when the delegate has as many such events as nodes. Events XNNPACK adds
  (layout transposes, converts) or fuses have no node: they are listed as unattributed in
  `nodes.json`, with their time, never spread over nodes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kit.core import atomic
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.profile import armkit as runfiles
from kit.profile.runrecord import RunRecord
from kit.report.charts import COLORS
from kit.store import views
from kit.store.warehouse import Warehouse
from kit.trace.program import EdgeGraph, GraphNode, edge_graph

GRAPH_ID = "graph"  # the PyTorch ExportedProgram adapter names its one graph so
# XNNPACK operator kinds and the edge ops they implement (node target bases).
KIND_TO_ATEN = {
    "Convolution": {"convolution"},
    "Deconvolution": {"convolution"},
    "Fully Connected": {"linear", "addmm", "mm"},
    "Batch Matrix Multiply": {"bmm"},
    "Add": {"add"},
    "Subtract": {"sub"},
    "Multiply": {"mul"},
    "Divide": {"div"},
    "Maximum": {"maximum"},
    "Minimum": {"minimum"},
    "Clamp": {"relu", "hardtanh", "clamp"},
    "Sigmoid": {"sigmoid"},
    "Tanh": {"tanh"},
    "GELU": {"gelu"},
    "ELU": {"elu"},
    "Leaky ReLU": {"leaky_relu"},
    "HardSwish": {"hardswish"},
    "Softmax": {"_softmax", "softmax"},
    "Mean": {"mean"},
    "Global Average Pooling": {"mean", "_adaptive_avg_pool2d", "adaptive_avg_pool2d"},
    "Max Pooling": {"max_pool2d", "max_pool2d_with_indices"},
    "Argmax Pooling": {"max_pool2d_with_indices"},
    "Average Pooling": {"avg_pool2d"},
    "Resize Bilinear": {"upsample_bilinear2d"},
    "Constant Pad": {"constant_pad_nd"},
    "Concatenate": {"cat"},
    "Square Root": {"sqrt"},
    "Reciprocal Square Root": {"rsqrt"},
    "Abs": {"abs"},
    "Negate": {"neg"},
    "Floor": {"floor"},
    "Ceiling": {"ceil"},
    "Exp": {"exp"},
    "Log": {"log"},
    "Transpose": {"permute_copy"},
}
GEMM_KINDS = ("Convolution", "Deconvolution", "Fully Connected")
GEMM_OPS = {"convolution", "linear", "addmm", "mm"}
# Keys a GraphNodeData may have (model_explorer/node_data_builder.py).
GRAPH_KEYS = {
    "results",
    "thresholds",
    "gradient",
    "hideInAggregatedStatsTable",
    "hideInChildrenStatsTable",
    "hideAggregatedStats",
    "showExpandedSummaryOnGroupNode",
    "showLabelCountColumnsInChildrenStatsTable",
}
RESULT_KEYS = {"value", "bgColor", "textColor"}
WHITE_TO_RED = [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 1, "bgColor": "#d62728"}]
# SME2 speedup: red below 1x (slower), yellow up to 1.5x, green above.
SPEEDUP_THRESHOLDS = [
    {"value": 1.0, "bgColor": "#f4a3a3"},
    {"value": 1.5, "bgColor": "#fde79a"},
    {"value": 1e9, "bgColor": "#9fd8a3"},
]


@dataclass
class Attribution:
    """Which node each timed event slot of a run belongs to."""

    slots: pd.DataFrame  # instruction_id, slot, node ("" when unattributed), op_type, delegated
    notes: list[str] = field(default_factory=list)


def _kernel_base(op_type: str) -> str:
    """'native_group_norm' for 'aten::native_group_norm.out'."""
    return op_type.split("::")[-1].split(".")[0]


def _kind(op_type: str) -> str:
    return op_type.split(" (")[0].split(" #")[0]


def attribute(events: pd.DataFrame, graph: EdgeGraph) -> Attribution:
    """Events of the first iteration, by (instruction, position within it), to node names."""
    first = events[events.iteration == events.iteration.min()].sort_values("seq")
    first = first.assign(slot=first.groupby("instruction_id").cumcount())
    by_handle: dict[int, list[GraphNode]] = {}
    for n in graph.nodes:
        if n.op == "call_function" and n.handle is not None and n.target != "getitem":
            by_handle.setdefault(n.handle, []).append(n)
    taken: set[str] = set()
    node_of: dict[tuple[int, int], str] = {}

    def candidates(instr: int) -> list[GraphNode]:
        seen, out = set(), []
        for h in graph.handles.get(instr, []):
            for n in by_handle.get(h, []):
                if n.name not in seen and n.name not in taken:
                    seen.add(n.name)
                    out.append(n)
        return out

    # Portable kernels first: their kernel name says which op they run.
    portable = first[~first.delegated.astype(bool)]
    for r in portable.itertuples():
        cands = candidates(int(r.instruction_id))
        base = _kernel_base(r.op_type)
        pick = next((n for n in cands if n.base == base), None) or next(
            (n for n in cands if base in n.base or n.base in base), None
        )
        if pick is not None:
            node_of[(int(r.instruction_id), int(r.slot))] = pick.name
            taken.add(pick.name)
    # Delegates: per XNNPACK kind, pair events with nodes in order when their counts agree.
    delegated = first[first.delegated.astype(bool)]
    for instr, group in delegated.groupby("instruction_id", sort=True):
        cands = candidates(int(instr))
        for kind, evs in group.groupby(group.op_type.map(_kind), sort=False):
            bases = KIND_TO_ATEN.get(kind)
            if not bases:
                continue
            nodes = [n for n in cands if n.base in bases and n.name not in taken]
            if len(nodes) != len(evs):
                continue  # fused or inserted by XNNPACK: no one-to-one match
            for r, n in zip(evs.itertuples(), nodes):
                node_of[(int(instr), int(r.slot))] = n.name
                taken.add(n.name)
        # XNNPACK runs some 1x1 convolutions as Fully Connected: match the GEMM-like operators left
        # over as one sequence, in order, when their counts agree.
        left = [
            r for r in group.itertuples() if _kind(r.op_type) in GEMM_KINDS and (int(instr), int(r.slot)) not in node_of
        ]
        nodes = [n for n in candidates(int(instr)) if n.base in GEMM_OPS]
        if left and len(left) == len(nodes):
            for r, n in zip(left, nodes):
                node_of[(int(instr), int(r.slot))] = n.name
                taken.add(n.name)
    slots = pd.DataFrame(
        {
            "instruction_id": first.instruction_id.astype(int).to_numpy(),
            "slot": first.slot.astype(int).to_numpy(),
            "op_type": first.op_type.to_numpy(),
            "delegated": first.delegated.astype(bool).to_numpy(),
            "category": first.category.to_numpy(),
        }
    )
    slots["node"] = [node_of.get((i, s), "") for i, s in zip(slots.instruction_id, slots.slot)]
    return Attribution(slots)


def node_medians(events: pd.DataFrame, attribution: Attribution) -> pd.DataFrame:
    """Per node: median over iterations of its events' summed time, its category, its op types."""
    ev = events.sort_values(["iteration", "seq"]).copy()
    ev["slot"] = ev.groupby(["iteration", "instruction_id"]).cumcount()
    ev = ev.merge(attribution.slots[["instruction_id", "slot", "node"]], on=["instruction_id", "slot"], how="left")
    ev["node"] = ev.node.fillna("")
    iters = ev.iteration.unique()
    rows = []
    for node, g in ev.groupby("node"):
        per_iter = g.groupby("iteration").duration_ms.sum().reindex(iters, fill_value=0.0)
        rows.append(
            {
                "node": node,
                "median_ms": float(np.median(per_iter.to_numpy())),
                "category": g.category.iloc[0],
                "op_types": " | ".join(sorted(set(g.op_type))),
                "events_per_iteration": int(len(g) / len(iters)),
            }
        )
    return pd.DataFrame(rows, columns=["node", "median_ms", "category", "op_types", "events_per_iteration"])


def graph_node_data(values: dict[str, object], *, gradient=None, thresholds=None, colors=None) -> dict:
    """One ModelNodeData object: {GRAPH_ID: {results, gradient | thresholds}}."""
    results = {}
    for node, v in values.items():
        item = {"value": v}
        if colors and node in colors:
            item["bgColor"] = colors[node]
        results[node] = item
    graph: dict = {"results": results}
    if gradient:
        graph["gradient"] = gradient
    if thresholds:
        graph["thresholds"] = thresholds
    return {GRAPH_ID: graph}


def validate(data, node_ids: set[str]) -> list[str]:
    """Problems of a node-data object against Model Explorer's format and the graph's node ids
    (empty when valid)."""
    problems: list[str] = []
    if not isinstance(data, dict) or not data:
        return ["not a non-empty object keyed by graph id"]
    for gid, g in data.items():
        if not isinstance(gid, str) or not isinstance(g, dict):
            problems.append(f"graph {gid!r}: not an object")
            continue
        extra = set(g) - GRAPH_KEYS
        if extra:
            problems.append(f"graph {gid}: unknown keys {sorted(extra)}")
        results = g.get("results")
        if not isinstance(results, dict):
            problems.append(f"graph {gid}: results is not an object")
            continue
        for node, item in results.items():
            if node not in node_ids:
                problems.append(f"graph {gid}: node {node!r} is not in the program's graph")
            if not isinstance(item, dict) or "value" not in item or set(item) - RESULT_KEYS:
                problems.append(f"graph {gid}: result of {node!r} is not {{value, bgColor?, textColor?}}")
                continue
            v = item["value"]
            if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, float) and v != v):
                problems.append(f"graph {gid}: value of {node!r} is not a number or a label")
            for key in ("bgColor", "textColor"):
                if key in item and not isinstance(item[key], str):
                    problems.append(f"graph {gid}: {key} of {node!r} is not a CSS colour")
        for t in g.get("thresholds", []):
            if (
                not isinstance(t, dict)
                or not isinstance(t.get("value"), (int, float))
                or not isinstance(t.get("bgColor"), str)
            ):
                problems.append(f"graph {gid}: threshold {t!r} is not {{value, bgColor, textColor?}}")
        stops = []
        for s in g.get("gradient", []):
            if not isinstance(s, dict) or not isinstance(s.get("stop"), (int, float)) or not 0 <= s["stop"] <= 1:
                problems.append(f"graph {gid}: gradient item {s!r} has no stop in [0, 1]")
            else:
                stops.append(s["stop"])
        if g.get("gradient") and not {0, 1} <= set(stops):
            problems.append(f"graph {gid}: gradient lacks the stops 0 and 1")
    return problems


@dataclass
class Explored:
    folder: Path
    files: dict[str, Path]  # metric -> node-data file
    nodes: pd.DataFrame  # node, median_ms, share_pct, category, op_types, [speedup]
    unattributed_ms: float
    graph: EdgeGraph
    etrecord: Path
    notes: list[str] = field(default_factory=list)


def _record(run_dir: str) -> RunRecord:
    if not run_dir or not (Path(run_dir) / "run.json").exists():
        raise Sme2Error(f"the run folder {run_dir or '?'} is gone", "Model Explorer data needs the run's record")
    return RunRecord.load(Path(run_dir))


def explore(root: DataRoot, run_id: str, out: Path | None = None) -> Explored:
    """Write the Model Explorer node-data files of a run (see the module doc); returns them."""
    wh = Warehouse.at(root)
    found = views.find_runs(wh, {"run": run_id})
    if found.empty:
        raise Sme2Error(
            f"run {run_id} is not in the warehouse",
            "profile it (sme2 profile) or ingest its folder (sme2 warehouse rebuild)",
        )
    row = found.iloc[0]
    record = _record(row.run_dir)
    pte, etrecord = runfiles.export_files(root, record)
    if etrecord is None:
        raise Sme2Error(
            f"the ETRecord of the program run {run_id} executed is gone (its export was removed or re-exported since)",
            f"re-export and re-profile: sme2 profile --model {record.model} --dtype {record.dtype} --target {record.target}",
        )
    graph = edge_graph(etrecord)
    events = views.op_events(wh, [run_id])
    attr = attribute(events, graph)
    med = node_medians(events, attr)
    execute = float(row.execute_median_ms)
    unattributed = float(med.loc[med.node == "", "median_ms"].sum())
    nodes = med[med.node != ""].copy()
    nodes["share_pct"] = 100 * nodes.median_ms / execute if execute > 0 else np.nan
    notes = []

    # SME2 off vs on per node, when this run has an SME2 sibling (same program) on hardware.
    sibling = views.find_runs(
        wh,
        {
            "variant": row.variant,
            "device": row.device,
            "threads": int(row.threads),
            "size": row["size"],
            "runner": row.runner,
            "sme2": not bool(row.sme2),
        },
    )
    speedup_file = None
    if not sibling.empty:
        other = sibling.iloc[0]
        if bool(row.emulated) or bool(other.emulated):
            notes.append("SME2 pair is emulated: no per-node speedups (emulated times are not hardware times)")
        else:
            o_events = views.op_events(wh, [other.run_id])
            o_med = node_medians(o_events, attribute(o_events, graph)).set_index("node").median_ms
            on, off = (
                (nodes.set_index("node").median_ms, o_med)
                if bool(row.sme2)
                else (o_med, nodes.set_index("node").median_ms)
            )
            sp = (off / on).replace([np.inf, -np.inf], np.nan).dropna()
            nodes["speedup"] = nodes.node.map(sp)
            speedup_file = other.run_id

    folder = Path(out) if out else root.report_path(record.variant, "explorer", run_id)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "median_ms": atomic.write_json(
            folder / "median_ms.json",
            graph_node_data(dict(zip(nodes.node, nodes.median_ms.round(6))), gradient=WHITE_TO_RED),
        ),
        "share_pct": atomic.write_json(
            folder / "share_pct.json",
            graph_node_data(dict(zip(nodes.node, nodes.share_pct.round(3))), gradient=WHITE_TO_RED),
        ),
        "category": atomic.write_json(
            folder / "category.json",
            graph_node_data(
                dict(zip(nodes.node, nodes.category)),
                colors={n: COLORS.get(c, "#9D9D9D") for n, c in zip(nodes.node, nodes.category)},
            ),
        ),
    }
    if "speedup" in nodes and nodes.speedup.notna().any():
        sp = nodes.dropna(subset=["speedup"])
        files["sme2_speedup"] = atomic.write_json(
            folder / "sme2_speedup.json",
            graph_node_data(dict(zip(sp.node, sp.speedup.round(3))), thresholds=SPEEDUP_THRESHOLDS),
        )
    by_name = {n.name: n for n in graph.nodes}
    detail = nodes.assign(
        target=nodes.node.map(lambda n: by_name[n].target),
        module=nodes.node.map(lambda n: by_name[n].module),
        module_type=nodes.node.map(lambda n: by_name[n].module_type),
    )
    un = attr.slots[attr.slots.node == ""]
    atomic.write_json(
        folder / "nodes.json",
        {
            "run_id": run_id,
            "graph": "the ETRecord's edge-dialect ExportedProgram (before partitioning); node ids are FX node names",
            "graph_id": GRAPH_ID,
            "etrecord": str(etrecord),
            "execute_median_ms": execute,
            "attributed_ms": float(nodes.median_ms.sum()),
            "unattributed_ms": unattributed,
            "unattributed_events": un.drop(columns=["node"]).to_dict("records"),
            "speedup_vs": speedup_file,
            "notes": notes,
            "nodes": json.loads(detail.to_json(orient="records")),
        },
    )
    return Explored(folder, files, nodes.reset_index(drop=True), unattributed, graph, etrecord, notes)


def open_in_model_explorer(explored: Explored, name: str) -> bool:
    """Open the program with the node data in Model Explorer when `ai-edge-model-explorer` is
    installed (an optional, large package); False when it is not."""
    try:
        import model_explorer
    except ImportError:
        return False
    from executorch.devtools.etrecord import parse_etrecord

    program = parse_etrecord(str(explored.etrecord)).edge_dialect_program
    cfg = model_explorer.config().add_model_from_pytorch(name, exported_program=program, settings=None)
    for path in explored.files.values():
        cfg.add_node_data_from_path(str(path))
    model_explorer.visualize_from_config(cfg)
    return True
