"""Stage 5, model package -> ExecuTorch program: .pte + ETRecord + program map + inputs, with a
numerical check run by the native runner."""

import logging

__all__ = [  # the sub-package's public modules: `from kit.export import *`, or import each by name
    "artifact",
    "batch",
    "cache",
    "exporter",
    "graph",
    "importer",
    "lowering",
    "numerics",
]

# torchao and torch log warnings at import time that say nothing about the user's export
# (CUDA-only extensions that cannot load on a CPU build, a deprecated pytree registration). Set
# here, where every export path (lowering, an imported program's ETRecord) passes first.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
