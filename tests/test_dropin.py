"""Arm-kit users' artifacts, unchanged: a .pte from a plain executorch script profiled without a model
package, Arm-kit packages registered with Arm's keyword options, our runner driven with
executor_runner's flags, and the exporter's --mode / --save-graph / --outdir / --all."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.clirun import sme2, sme2_here
from tests.modelpkg import conv_package

from kit.core.errors import ExportError, ModelPackageError
from kit.core.names import Variant
from kit.devices.transports.local import LocalTransport
from kit.export import artifact, exporter, graph, importer
from kit.models import registry
from kit.profile import session
from kit.runners import invoke
from kit.trace import etdump

REPO = Path(__file__).resolve().parent.parent

PLAIN_SCRIPT = textwrap.dedent(
    """
    # A plain executorch export, no model package: conv (delegated), a channels-last LayerNorm
    # (left on portable kernels) and a conv, so XNNPACK transposes NCHW <-> NHWC around the norm.
    import sys
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 16, 3, padding=1)
            self.norm = torch.nn.LayerNorm(16)
            self.conv2 = torch.nn.Conv2d(16, 8, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.conv1(x))
            y = self.norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return self.conv2(y)

    ep = torch.export.export(Block().eval(), (torch.randn(1, 3, 32, 32),))
    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()], generate_etrecord=True)
    program = edge.to_executorch()
    with open(sys.argv[1], "wb") as f:
        f.write(program.buffer)
    program.get_etrecord().save(sys.argv[2])
    """
)


@pytest.fixture(scope="module")
def plain_program(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    script = folder / "export_block.py"
    script.write_text(PLAIN_SCRIPT)
    pte, etrecord = folder / "block_net.pte", folder / "block_net.etrecord"
    subprocess.run([sys.executable, str(script), str(pte), str(etrecord)], check=True, capture_output=True, timeout=900)
    return pte, etrecord


# ---------------------------------------------------------------- --pte: a program, no package


@pytest.mark.slow  # lowers its own programs: ~50 s on 2 cores
def test_a_plain_executorch_pte_profiles_without_a_model_package(home, native_runner, plain_program):
    pte, _ = plain_program
    runs = json.loads(sme2("profile", "--pte", str(pte), "--iterations", "5", "--json", home=home.path).stdout)
    (r,) = runs
    assert r["model"] == "block_net" and r["dtype"] == "fp32" and r["size"] == "pte" and r["runner"] == "native"
    cats = {c["category"]: c for c in r["categories"]}
    assert cats["Convolution"]["median_ms"] > 0 and cats["Data Movement"]["ops"] >= 2  # the transposes
    meta = json.loads((Path(r["run_dir"]) / "export_meta.json").read_text())
    # Inputs from the program's own metadata; no ETRecord, so no module paths.
    assert meta["inputs"][0]["shape"] == [1, 3, 32, 32] and meta["inputs"][0]["dtype"] == "float32"
    assert meta["etrecord"] is None and meta["package"]["kind"] == "pte" and meta["delegate_partitions"] == 2
    assert meta["non_delegated_op_names"] == ["aten::native_layer_norm.out"]
    dm = json.loads(sme2_here("datamovement", r["run_dir"], "--json", home=home.path).stdout)
    assert dm["transposes"]["count"] >= 2 and dm["transposes"]["share"] > 0


@pytest.mark.slow  # lowers its own program: ~25 s cold on 2 cores (full tier)
def test_a_pte_with_its_etrecord_gets_module_paths(home, native_runner, plain_program):
    pte, etrecord = plain_program
    exp = importer.import_program(pte, home, etrecord=etrecord)
    modules = {m for i in exp.program_map.instructions for m in i.modules}
    assert {"conv1", "norm", "conv2"} <= modules
    assert exp.etrecord is not None and exp.etrecord.is_file() and "unavailable" not in exp.meta
    # Importing the same program again is a no-op.
    assert importer.import_program(pte, home, etrecord=etrecord).meta["exported_at"] == exp.meta["exported_at"]


@pytest.mark.slow  # lowers its own program: ~25 s cold on 2 cores (full tier)
def test_a_foreign_etrecord_or_a_non_program_is_refused(home, exports, plain_program, tmp_path):
    pte, _ = plain_program
    with pytest.raises(ExportError, match="does not belong to"):
        importer.import_program(pte, home, etrecord=exports["fp32"].etrecord)
    junk = tmp_path / "junk.pte"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ExportError, match="is not an ExecuTorch program"):
        importer.import_program(junk, home)
    with pytest.raises(ExportError, match="does not exist"):
        importer.import_program(tmp_path / "missing.pte", home)


def test_program_names_follow_arms_file_names():
    assert importer.program_identity("mobilenet_v3_small_xnnpack_fp16") == ("mobilenet_v3_small", "fp16", "xnnpack")
    assert importer.program_identity("toy_cnn_xnnpack_q8") == ("toy_cnn", "int8", "xnnpack")
    assert importer.program_identity("My Model!") == ("my_model", None, None)


# ---------------------------------------------------------------- executor_runner's flags


def test_our_runner_takes_executor_runners_flags(exports, native_runner, tmp_path):
    exp = exports["fp32"]
    req = invoke.RunRequest(pte=exp.pte, inputs=exp.inputs, iterations=5, warmup=2, threads=1, etdump=True)
    out = invoke.run_executor_runner(req, tmp_path, LocalTransport("host"), native_runner)
    assert out.argv[1:7] == ["--model_path", str(exp.pte), "--num_executions", "7", "--cpu_threads", "1"]
    assert out.argv[7] == "--etdump_path" and out.outputs is None
    assert out.result["mode"] == "executor_runner" and len(out.result["latencies_ms"]) == 7
    assert out.result["reported_executions"] == 7 and out.result["reported_total_ms"] > 0
    assert etdump.ingest(out.etdump, exp.program_map, warmup=2).iterations == 5
    # gflags' --flag=value form, and a clear refusal of flags it does not know.
    proc = subprocess.run(
        [str(native_runner.path), f"--model_path={exp.pte}", "--num_executions=2", "--bogus", "1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "unknown argument --bogus" in proc.stderr


# ---------------------------------------------------------------- Arm-kit packages, keyword options


ARM_MODEL = textwrap.dedent(
    """
    import torch
    from ..model_base import EagerModelBase


    class Net(EagerModelBase):
        def get_eager_model(self):
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3)).eval()

        def get_example_inputs(self):
            return (torch.randn(1, 3, 24, 24),)
    """
)


def _arm_package(models: Path, name: str, register: str) -> None:
    (models / name).mkdir(parents=True)
    (models / name / "model.py").write_text(ARM_MODEL)
    (models / name / "__init__.py").write_text(f"from .model import Net\nfrom .. import register_model\n\n{register}\n")


@pytest.fixture(scope="module")
def arm_models(tmp_path_factory):
    models = tmp_path_factory.mktemp("armkit") / "models"
    _arm_package(models, "arm_q", 'register_model("arm_q", Net, xnnpack_quantization="STATIC_PER_TENSOR")')
    _arm_package(models, "arm_nodelegate", 'register_model("arm_nodelegate", Net, xnnpack_delegation=False)')
    _arm_package(models, "arm_dyn", 'register_model("arm_dyn", Net, xnnpack_quantization="DYNAMIC_PER_CHANNEL")')
    _arm_package(models, "arm_badq", 'register_model("arm_badq", Net, xnnpack_quantization="INT4")')
    return models


def test_arm_kit_keyword_options_register(arm_models):
    pkgs = {p.name: p for p in registry.discover(arm_models)}
    assert pkgs["arm_q"].ok and pkgs["arm_q"].kind == "arm-kit"
    assert pkgs["arm_q"].spec.supported_dtypes == ("fp32", "fp16", "int8")
    assert "STATIC_PER_TENSOR" in pkgs["arm_q"].spec.unsupported["int8-dynamic"]
    assert pkgs["arm_dyn"].spec.supported_dtypes == ("fp32", "fp16", "int8-dynamic")
    assert pkgs["arm_nodelegate"].ok and pkgs["arm_nodelegate"].spec.delegation is False
    assert "xnnpack_quantization='INT4' is not a quantization type" in pkgs["arm_badq"].error
    with pytest.raises(ModelPackageError, match="does not support int8-dynamic"):
        registry.dtypes_of("arm_q", "int8-dynamic", arm_models)
    listed = {
        m["name"]: m
        for m in json.loads(
            sme2("models", "--models-dir", str(arm_models), "--json", home=arm_models.parent / "home").stdout
        )
    }
    assert (
        listed["arm_q"]["quantization"] == "STATIC_PER_TENSOR"
        and listed["arm_nodelegate"]["xnnpack_delegation"] is False
    )


@pytest.mark.slow  # exports and profiles Arm's package: ~15 s on 2 cores (full tier)
def test_arm_kit_package_with_options_exports_and_profiles(arm_models, home, native_runner, host):
    pkg = registry.get("arm_q", arm_models)
    exp = exporter.export_variant(pkg, "int8", "small", home)
    assert exp.meta["quantization"].startswith("static per-tensor") and exp.meta["numerical_check"]["passed"]
    result = session.run_session(
        home, exp, host, session.Measurement(threads=1, iterations=5, warmup=1, binary=native_runner)
    )
    convs = [op for op in result.analysis.op_stats.op_type if op.startswith("Convolution")]
    # Per-tensor int8 weights run XNNPACK's QS8 convolution, not the per-channel QC8W one.
    assert convs and all("QS8" in op and "QC8W" not in op for op in convs)
    assert result.record.model == "arm_q" and result.analysis.e2e["median_ms"] > 0
    plain = exporter.export_variant(registry.get("arm_nodelegate", arm_models), "fp32", "small", home)
    assert plain.meta["xnnpack_delegation"] is False and plain.meta["delegate_partitions"] == 0
    assert plain.meta["numerical_check"]["passed"]


# ---------------------------------------------------------------- exporter flags


@pytest.fixture(scope="module")
def export_models(tmp_path_factory):
    models = conv_package(tmp_path_factory.mktemp("exportflags") / "models", "toy")
    _arm_package(models, "armnone", 'register_model("armnone", Net, xnnpack_quantization="NONE")')
    return models


@pytest.mark.slow  # lowers its own programs (in this process: the exporter's imports are paid once)
def test_export_modes_and_outdir(export_models, home, tmp_path):
    debug_dir, minimum_dir = tmp_path / "debug", tmp_path / "minimum"
    proc = sme2_here(
        "export",
        "--models-dir",
        str(export_models),
        "--model",
        "toy",
        "--mode",
        "debug",
        "--outdir",
        str(debug_dir),
        home=home.path,
    )
    assert "export ok toy-fp32 (small, debug)" in proc.stdout.replace("\n", "")
    assert {p.name for p in debug_dir.iterdir()} == {
        "toy_xnnpack_fp32.pte",
        "toy_xnnpack_fp32.etrecord",
        "export_meta.json",
        "program_map.json",
        graph.GRAPH_FILE,
        graph.REPORT_FILE,
    }
    g = json.loads((debug_dir / graph.GRAPH_FILE).read_text())
    assert g["nodes"] and g["delegate_partitions"] and g["ops"]["aten_convolution_default"]["delegated"] == 1
    assert any(n.get("delegate") == g["delegate_partitions"][0]["name"] for n in g["nodes"])
    assert "## Delegate partitions" in (debug_dir / graph.REPORT_FILE).read_text()

    proc = sme2_here(
        "export",
        "--models-dir",
        str(export_models),
        "--model",
        "toy",
        "--dtype",
        "fp16",
        "--mode",
        "minimum",
        "--outdir",
        str(minimum_dir),
        home=home.path,
    )
    assert [p.name for p in minimum_dir.iterdir()] == ["toy_xnnpack_fp16.pte"]  # the .pte only
    assert "unavailable downstream" in proc.stdout and "ETRecord" in proc.stdout
    # A package outside the models folder exports into a folder of its own (its source id).
    exp = artifact.find(home, Variant("toy", "fp16"), "small", registry.get("toy", export_models).source_id)
    assert exp.meta["mode"] == "minimum" and exp.etrecord is None and exp.meta["unavailable"]
    assert not any(i.modules for i in exp.program_map.instructions)  # no ETRecord: no module paths
    # A later standard request re-exports (minimum does not serve it); --save-graph adds graph.json.
    again = exporter.export_variant(registry.get("toy", export_models), "fp16", "small", home, save_graph=True)
    assert again.meta["mode"] == "standard" and again.etrecord.is_file()
    assert (again.folder / graph.GRAPH_FILE).is_file()


@pytest.mark.slow  # lowers every package and dtype: ~25 s on 2 cores (full tier)
def test_export_all_exports_every_package_and_dtype(export_models, home):
    broken = export_models / "broken"
    broken.mkdir()
    (broken / "model.py").write_text("raise RuntimeError('boom')\n")
    try:
        proc = sme2("export", "--models-dir", str(export_models), "--all", home=home.path, check=False)
    finally:
        shutil.rmtree(broken)  # with its __pycache__ (the import compiled it before it raised)
    assert proc.returncode == 1 and "not exported: broken" in proc.stderr
    oks = [line for line in proc.stdout.splitlines() if line.startswith("export ok")]
    assert sorted(line.split()[2] for line in oks) == ["armnone-fp16", "armnone-fp32", "toy-fp16", "toy-fp32"]
