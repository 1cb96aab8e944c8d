import pytest

from kit.core import names
from kit.core.errors import NameError_
from kit.core.names import Target, Variant


@pytest.mark.parametrize("bad", ["", "Tiny", "a-b", "../x", "a b", "x" * 65, "a;rm"])
def test_model_names_are_validated(bad):
    with pytest.raises(NameError_):
        names.model_name(bad)


@pytest.mark.parametrize("bad", ["", "-x", "Host", "a/b", "a.b", "dev ice"])
def test_device_names_are_validated(bad):
    with pytest.raises(NameError_):
        names.device_name(bad)


def test_variant_key_round_trips():
    for v in (Variant("tiny_seg", "fp32"), Variant("squeeze_sam", "int8-dynamic"), Variant("m", "fp16", "portable")):
        assert Variant.parse(v.key) == v
    assert Variant("squeeze_sam", "int8").key == "squeeze_sam-int8"
    assert Variant("squeeze_sam", "int8-dynamic").stem == "squeeze_sam_xnnpack_int8_dynamic"


def test_target_key_round_trips_and_rejects_garbage():
    assert Target.parse("armv9-qemu.sme2-on") == Target("armv9-qemu", True)
    assert Target("host", False).key == "host.sme2-off"
    for bad in ("host", "host.sme2", "host.sme2-maybe", "../x.sme2-on", ".sme2-on"):
        with pytest.raises(NameError_):
            Target.parse(bad)


def test_unknown_dtype_names_the_choices():
    with pytest.raises(NameError_, match="fp32, fp16, int8, int8-dynamic"):
        names.dtype("int4")
