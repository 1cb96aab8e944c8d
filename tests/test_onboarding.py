"""The onboarding walk-through of docs/onboarding.md, followed with a package written here."""

import json
import os
import textwrap

import pytest

from tests import clirun

PACKAGE = textwrap.dedent(
    """
    import torch
    from kit.models.modelspec import ModelSpec


    class MyNet(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, width, 3, padding=1)
            self.norm = torch.nn.LayerNorm(width)
            self.fc = torch.nn.Linear(width, 4)

        def forward(self, x):
            y = torch.relu(self.conv(x)).permute(0, 2, 3, 1)
            return self.fc(self.norm(y))


    def build(size, checkpoint=None):
        return MyNet(size["width"]).eval()


    def example_inputs(size):
        g = torch.Generator().manual_seed(0)
        return (torch.rand(1, 3, size["resolution"], size["resolution"], generator=g),)


    MODEL = ModelSpec(name="my_net", build=build, example_inputs=example_inputs,
                      sizes={"small": {"resolution": 32, "width": 16}, "full": {"resolution": 128, "width": 32}},
                      dtypes=("fp32", "int8"), unsupported={"fp16": "not needed for this walk-through"})
    """
)


def sme2(*args, env) -> str:
    return clirun.sme2(*args, env=env).stdout


@pytest.mark.slow  # two exports and a profile through four CLI runs: about 90 s on 2 cores
def test_walkthrough_with_a_new_package(tmp_path, home, native_runner):
    models = tmp_path / "models"
    (models / "my_net").mkdir(parents=True)
    (models / "my_net" / "model.py").write_text(PACKAGE)
    env = {**os.environ, "SME2_HOME": str(home.path), "SME2_MODELS": str(models)}
    listed = json.loads(sme2("models", "--json", env=env))
    assert [m["name"] for m in listed] == ["my_net"] and listed[0]["ok"] and listed[0]["dtypes"] == ["fp32", "int8"]
    exported = json.loads(
        sme2("export", "--model", "my_net", "--dtype", "fp32,int8", "--size", "small", "--json", env=env)
    )
    assert [e["variant"] for e in exported] == ["my_net-fp32", "my_net-int8"] and all(
        e["numerical_check"]["passed"] for e in exported
    )
    runs = json.loads(
        sme2(
            "profile", "--model", "my_net", "--dtype", "int8", "--size", "small", "--iterations", "5", "--json", env=env
        )
    )
    ops = {o["op_type"] for o in runs[0]["top_operators"]}
    assert any(o.startswith(("Convolution", "Fully Connected")) for o in ops)
    assert "aten::native_layer_norm.out" in ops
    rows = json.loads(
        sme2(
            "sql",
            "SELECT variant, count(*) AS n FROM runs WHERE model = 'my_net' GROUP BY variant",
            "-f",
            "json",
            env=env,
        )
    )
    assert rows == [{"variant": "my_net-int8", "n": 1}]
