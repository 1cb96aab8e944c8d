"""Model onboarding: discovery from a folder, the Arm-kit contract, and broken packages."""

import textwrap

import pytest

from kit.core.errors import ExportError, ModelPackageError
from kit.export import exporter
from kit.models import registry

ARM_MODEL = textwrap.dedent(
    """
    import torch
    from ..model_base import EagerModelBase


    class ArmToy(EagerModelBase):
        def get_eager_model(self):
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()

        def get_example_inputs(self):
            return (torch.randn(1, 3, 16, 16),)
    """
)
ARM_INIT = 'from .model import ArmToy\nfrom .. import register_model\n\nregister_model("arm_toy", ArmToy)\n'

NOT_EXPORTABLE = textwrap.dedent(
    """
    import torch
    from kit.models.modelspec import ModelSpec


    class Branchy(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
                return x * 2
            return x


    MODEL = ModelSpec(name="not_exportable", build=lambda size, ckpt: Branchy().eval(),
                      example_inputs=lambda size: (torch.ones(1, 4),),
                      sizes={"small": {}, "full": {}})
    """
)


@pytest.fixture()
def models_dir(tmp_path):
    d = tmp_path / "models"
    (d / "arm_toy").mkdir(parents=True)
    (d / "arm_toy" / "model.py").write_text(ARM_MODEL)
    (d / "arm_toy" / "__init__.py").write_text(ARM_INIT)
    (d / "syntax_bad").mkdir()
    (d / "syntax_bad" / "model.py").write_text("def broken(:\n")
    (d / "no_builder").mkdir()
    (d / "no_builder" / "model.py").write_text("X = 1\n")
    (d / "not_exportable").mkdir()
    (d / "not_exportable" / "model.py").write_text(NOT_EXPORTABLE)
    return d


def test_default_models_are_discovered():
    pkgs = {p.name: p for p in registry.discover()}
    assert pkgs["tiny_seg"].ok and pkgs["tiny_seg"].kind == "native"
    assert {"small", "full"} <= set(pkgs["tiny_seg"].spec.sizes)


def test_broken_packages_are_reported_without_hiding_others(models_dir):
    pkgs = {p.name: p for p in registry.discover(models_dir)}
    assert set(pkgs) == {"arm_toy", "syntax_bad", "no_builder", "not_exportable"}
    assert pkgs["arm_toy"].ok and pkgs["arm_toy"].kind == "arm-kit"
    assert "SyntaxError" in pkgs["syntax_bad"].error and "model.py:1" in pkgs["syntax_bad"].error
    assert "declares no model" in pkgs["no_builder"].error
    assert pkgs["not_exportable"].ok  # broken only at export time
    with pytest.raises(ModelPackageError, match="syntax_bad.*broken"):
        registry.get("syntax_bad", models_dir)


def test_arm_kit_package_exports_unchanged(models_dir, home, native_runner):
    pkg = registry.get("arm_toy", models_dir)
    exp = exporter.export_variant(pkg, "fp32", "small", home)
    assert exp.meta["package"]["kind"] == "arm-kit"
    assert exp.meta["numerical_check"]["passed"]
    assert exp.meta["delegate_partitions"] >= 1


def test_export_failure_names_the_package_and_leaves_nothing(models_dir, home):
    pkg = registry.get("not_exportable", models_dir)
    with pytest.raises(ExportError, match="not_exportable-fp32"):
        exporter.export_variant(pkg, "fp32", "small", home)
    assert not list(home.exports.glob("not_exportable*"))
    assert not list(home.exports.glob(".not_exportable*"))


def test_content_hash_changes_only_with_content(models_dir):
    before = registry.content_hash(models_dir / "arm_toy")
    assert registry.content_hash(models_dir / "arm_toy") == before
    (models_dir / "arm_toy" / "README.md").write_text("notes")
    assert registry.content_hash(models_dir / "arm_toy") != before


def test_unsupported_dtype_is_refused_with_choices(tiny, home):
    tiny.spec.unsupported["fp16"] = "example reason"
    try:
        with pytest.raises(ModelPackageError, match="does not support fp16: example reason"):
            exporter.export_variant(tiny, "fp16", "small", home)
    finally:
        tiny.spec.unsupported.pop("fp16")


def test_checkpoint_mismatch_is_a_clear_error(tiny, tmp_path):
    import torch

    path = tmp_path / "wrong.pt"
    torch.save({"stem.weight": torch.zeros(1)}, path)
    with pytest.raises(ModelPackageError, match="does not match model 'tiny_seg'"):
        tiny.spec.build(tiny.spec.size("small"), str(path))


def test_dtype_selection_offers_only_supported_dtypes():
    assert registry.dtypes_of("squeeze_sam", "all") == ["fp32", "fp16", "int8"]  # no int8-dynamic
    assert registry.dtypes_of("tiny_seg", "int8, fp32") == ["int8", "fp32"]
    with pytest.raises(ModelPackageError, match="does not support int8-dynamic") as info:
        registry.dtypes_of("squeeze_sam", "fp32,int8-dynamic")
    assert info.value.hint == "choose one of fp32, fp16, int8"
