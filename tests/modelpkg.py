"""Model packages made for tests from the bundled ones."""

from __future__ import annotations

import shutil
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
