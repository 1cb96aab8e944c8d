"""Model packages made for tests from the bundled ones."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def slower_tiny_seg(models: Path, width: int = 48) -> Path:
    """A models folder holding tiny_seg three times wider (real extra work: ~9x the convolution
    FLOPs); exported and profiled, its runs have the same key as tiny_seg's."""
    dst = models / "tiny_seg"
    shutil.copytree(REPO / "models" / "tiny_seg", dst, ignore=shutil.ignore_patterns("__pycache__"))
    text = (dst / "model.py").read_text()
    old = 'sizes={"small": {"resolution": 64}, "full": {"resolution": 256}}'
    assert old in text
    new = f'sizes={{"small": {{"resolution": 64, "width": {width}}}, "full": {{"resolution": 256, "width": {width}}}}}'
    (dst / "model.py").write_text(text.replace(old, new))
    return models


CONV_PACKAGE = textwrap.dedent(
    """
    import torch
    from kit.models.modelspec import ModelSpec

    MODEL = ModelSpec(
        name={name!r},
        build=lambda size, ckpt: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval(),
        example_inputs=lambda size: (torch.randn(1, 3, 12, 12),),
        sizes={{"small": {{}}, "full": {{}}}},
        dtypes=("fp32", "fp16"),
    )
    """
)


def conv_package(models: Path, name: str = "toy") -> Path:
    """A models folder holding one package of one convolution (fp32, fp16): it lowers in about a
    second, where tiny_seg takes 10-20 s, for tests of what happens around an export."""
    (models / name).mkdir(parents=True)
    (models / name / "model.py").write_text(CONV_PACKAGE.format(name=name))
    return models
