"""ExecuTorch's example models by name, and keyword example inputs of Arm-kit packages: real
exports through the real exporter (tiny models: seconds)."""

from __future__ import annotations

import importlib.util
import textwrap

import pytest

from kit.core.errors import ModelPackageError
from kit.core.home import DataRoot
from kit.export import exporter
from kit.models import examples, registry


def test_an_example_model_exports_by_name_without_a_package(tmp_path):
    pkg = registry.get("add_mul")
    assert pkg.kind == "executorch-example" and pkg.ok and pkg.source_id  # its own export folder
    exp = exporter.export_variant(pkg, "fp32", "small", DataRoot.resolve(tmp_path / "home"))
    assert exp.pte.is_file() and exp.meta["numerical_check"]["max_rel_error"] <= 1e-5
    assert exp.meta["package"]["name"] == "add_mul"


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is importable here")
def test_an_example_that_needs_a_missing_package_says_which():
    with pytest.raises(ModelPackageError, match="needs 'torchvision'"):
        registry.get("mv3")
    with pytest.raises(ModelPackageError, match="no model package 'nosuch'.*no example model"):
        registry.get("nosuch")


def test_an_example_asking_for_pretrained_weights_stays_randomly_initialized():
    import torch
    import torch.hub

    def torchvision_like_builder():  # what torchvision's `pretrained=True` does
        model = torch.nn.Linear(4, 2)
        state = torch.hub.load_state_dict_from_url("https://download.pytorch.org/models/x.pth")
        model.load_state_dict(state)
        return model

    torch.manual_seed(0)
    with examples.no_downloads("mv3") as skipped:
        model = torchvision_like_builder()
        with pytest.raises(ModelPackageError, match="never downloads"):
            torch.hub.download_url_to_file("https://example.com/data.bin", "/tmp/never")
    torch.manual_seed(0)
    assert torch.equal(model.weight, torch.nn.Linear(4, 2).weight)  # the random initialization, kept
    assert skipped == ["https://download.pytorch.org/models/x.pth"]
    # everything put back: a real state dict loads again outside the context
    target = torch.nn.Linear(4, 2)
    target.load_state_dict(model.state_dict())
    assert torch.equal(target.weight, model.weight)
    assert torch.hub.load_state_dict_from_url.__name__ == "load_state_dict_from_url"


KWARGS_MODEL = textwrap.dedent(
    """
    import torch
    from ..model_base import EagerModelBase


    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x, *, scale):
            return self.conv(x) * scale


    class ScaledModel(EagerModelBase):
        def get_eager_model(self):
            return Scaled().eval()

        def get_example_inputs(self):
            return (torch.rand(1, 3, 8, 8),)

        def get_example_kwarg_inputs(self):
            return {"scale": torch.full((1, 4, 1, 1), 0.5)}
    """
)


def test_keyword_example_inputs_reach_the_exporter(tmp_path):
    models = tmp_path / "models"
    (models / "scaled").mkdir(parents=True)
    (models / "scaled" / "model.py").write_text(KWARGS_MODEL)
    (models / "scaled" / "__init__.py").write_text(
        'from .model import ScaledModel\nfrom .. import register_model\n\nregister_model("scaled", ScaledModel)\n'
    )
    pkg = registry.get("scaled", models)
    assert len(pkg.spec.example_inputs(pkg.spec.size("small"))) == 2  # x, then scale
    exp = exporter.export_variant(pkg, "fp32", "small", DataRoot.resolve(tmp_path / "home"))
    assert len(exp.meta["inputs"]) == 2 and exp.meta["numerical_check"]["max_rel_error"] <= 1e-4
