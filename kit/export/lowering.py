"""The torch side of an export: eager outputs as numpy, PT2E quantization with the XNNPACK
quantizer, torch.export -> edge -> ExecuTorch program (with or without the XNNPACK partitioner),
and the delegation summary export_meta.json records. Everything that imports torch, torchao and
executorch.exir to make a program is here; the exporter decides when, and writes the folder."""

from __future__ import annotations

import numpy as np


def to_numpy(out) -> list[np.ndarray]:
    import torch

    if isinstance(out, torch.Tensor):
        out = (out,)
    flat = []
    for o in out:
        if isinstance(o, torch.Tensor):
            flat.append(o.detach().contiguous().numpy())
        elif isinstance(o, (tuple, list)):
            flat.extend(to_numpy(o))
    return flat


def quantize(model, inputs: tuple, calibration: list[tuple], options: dict):
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    captured = torch.export.export(model, inputs).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(**options))
    prepared = prepare_pt2e(captured, quantizer)
    with torch.no_grad():
        for batch in calibration:
            prepared(*batch)
    return convert_pt2e(prepared)


def delegation(edge_manager) -> dict:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge_manager.exported_program().graph_module)
    ops = {
        k: {"delegated": v.delegated, "non_delegated": v.non_delegated}
        for k, v in info.delegation_by_operator.items()
        if k != "getitem"
    }
    return {
        "delegate_partitions": info.num_delegated_subgraphs,
        "delegated_ops": sum(v["delegated"] for v in ops.values()),
        "non_delegated_ops": sum(v["non_delegated"] for v in ops.values()),
        "delegated_op_names": sorted(k for k, v in ops.items() if v["delegated"]),
        "non_delegated_op_names": sorted(k for k, v in ops.items() if v["non_delegated"]),
        "by_operator": ops,
    }


def quantization_label(spec, dtype: str) -> str | None:
    if dtype not in ("int8", "int8-dynamic"):
        return None
    opts = spec.quantizer_options(dtype)
    label = (
        f"{'dynamic' if opts['is_dynamic'] else 'static'} {'per-channel' if opts['is_per_channel'] else 'per-tensor'}"
    )
    return label + (f" (package: xnnpack_quantization={spec.quantization})" if spec.quantization else "")


def lower(model, inputs: tuple, backend: str, delegate: bool = True, etrecord: bool = True):
    import torch
    from executorch.exir import to_edge_transform_and_lower

    ep = torch.export.export(model, inputs)
    partitioners = []
    if backend == "xnnpack" and delegate:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    edge = to_edge_transform_and_lower(ep, partitioner=partitioners, generate_etrecord=etrecord)
    return edge, edge.to_executorch()
