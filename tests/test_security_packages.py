"""Packages and artifacts that must not be trusted: a package posing as another model, export
folders with corrupt metadata, failure logs that vanish with their staging folder, model code that
ends the process, and run parameters or outputs that make no sense.

Everything is real: packages written to temp folders, exports of tiny_seg (size small) into a data
root of this module, the native runner, and `sme2` run as a user runs it."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests import clirun

from kit.core import limits
from kit.core.errors import ExportError, ModelPackageError, RunnerError, Sme2Error
from kit.core.home import DataRoot
from kit.core.settings import Measure
from kit.export import artifact, batch, exporter, numerics
from kit.models import registry
from kit.profile import session
from kit.runners import invoke

pytestmark = pytest.mark.slow  # exports hostile packages through the real CLI (minutes on 2 cores)

TINY_SEG_SOURCE = (registry.DEFAULT_MODELS_DIR / "tiny_seg" / "model.py").read_text()

ARM_KIT_IMPOSTOR_MODEL = textwrap.dedent(
    """
    import torch
    from ..model_base import EagerModelBase


    class Toy(EagerModelBase):
        def get_eager_model(self):
            return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval()

        def get_example_inputs(self):
            return (torch.randn(1, 3, 16, 16),)
    """
)
ARM_KIT_IMPOSTOR_INIT = 'from .model import Toy\nfrom .. import register_model\n\nregister_model("tiny_seg", Toy)\n'


def _native_package(name: str, forward_body: str, top: str = "") -> str:
    """A small native package whose forward runs `forward_body` (x is the input)."""
    return textwrap.dedent(
        f"""
            import os, signal, sys
            import torch
            from kit.models.modelspec import ModelSpec
            {top}

            class Net(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

                def forward(self, x):
                    {forward_body}


            MODEL = ModelSpec(name="{name}", build=lambda size, ckpt: Net().eval(),
                              example_inputs=lambda size: (torch.rand(1, 3, 16, 16),),
                              sizes={{"small": {{}}, "full": {{}}}}, dtypes=("fp32", "int8"))
            """
    )


def _write_package(models: Path, name: str, model_py: str, init_py: str | None = None) -> Path:
    folder = models / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.py").write_text(model_py)
    if init_py is not None:
        (folder / "__init__.py").write_text(init_py)
    return folder


def sme2(*args, home: Path, models: Path | None = None) -> subprocess.CompletedProcess:
    return clirun.sme2(*args, home=home, env={"SME2_MODELS": str(models)} if models else None, check=False)


def _log_in_hint(error: Sme2Error) -> Path:
    found = re.search(r"log: (/\S+)", error.hint)
    assert found, f"no log path in the hint: {error.hint!r}"
    return Path(found.group(1))


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def fresh_root(tmp_path_factory, home, native_runner) -> DataRoot:
    """A data root of its own (its exports are corrupted on purpose), sharing the session's built
    runners so no test here rebuilds the native runner."""
    root = DataRoot.resolve(tmp_path_factory.mktemp("security-home"))
    (root.path / "runners").symlink_to(home.runners, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def tiny_fp32(fresh_root) -> artifact.Export:
    return exporter.export_variant(registry.get("tiny_seg"), "fp32", "small", fresh_root)


@pytest.fixture(scope="module")
def host(fresh_root):
    from kit.devices import inventory

    return inventory.resolve("host.sme2-off", fresh_root)


@pytest.fixture(scope="module")
def impostor_models(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("impostor") / "models"
    _write_package(models, "tiny_seg", TINY_SEG_SOURCE)
    _write_package(models, "impostor", TINY_SEG_SOURCE)  # declares name="tiny_seg"
    _write_package(models, "arm_impostor", ARM_KIT_IMPOSTOR_MODEL, ARM_KIT_IMPOSTOR_INIT)
    return models


# ------------------------------------------------------- 1. a package posing as another model


IMPOSTOR_PROBLEM = (
    "models/impostor declares name 'tiny_seg'; a package's name must be its folder name: rename the folder or the name"
)


def test_a_package_declaring_another_name_is_listed_with_its_problem_and_refused(impostor_models):
    pkgs = {p.name: p for p in registry.discover(impostor_models)}
    assert pkgs["tiny_seg"].ok
    impostor = pkgs["impostor"]
    assert not impostor.ok and impostor.spec is None
    assert impostor.error.startswith(IMPOSTOR_PROBLEM)
    # Two packages claiming one name: the hint names the package the name belongs to.
    assert "models/tiny_seg is another package" in impostor.error
    arm = pkgs["arm_impostor"]
    assert not arm.ok and "models/arm_impostor declares name 'tiny_seg'" in arm.error
    for name in ("impostor", "arm_impostor"):
        with pytest.raises(ModelPackageError, match=f"{name}.*broken.*declares name 'tiny_seg'"):
            registry.get(name, impostor_models)
    assert registry.get("tiny_seg", impostor_models).ok


def test_no_export_or_run_lands_under_another_packages_key(impostor_models, fresh_root):
    # The profile path refuses the package before anything runs.
    plan = session.ProfilePlan(
        model="impostor",
        dtypes=["fp32"],
        targets=["host.sme2-off"],
        models_dir=str(impostor_models),
        measure=Measure(runner="pybind"),
    )
    with pytest.raises(ModelPackageError, match="declares name 'tiny_seg'"):
        session.execute(plan, fresh_root)
    # A package object made by hand (not through the registry) is refused by export too.
    real = registry.get("tiny_seg", impostor_models)
    forged = registry.ModelPackage(
        name="impostor", path=impostor_models / "impostor", content_hash="0" * 64, spec=real.spec
    )
    with pytest.raises(ModelPackageError, match="declares name 'tiny_seg'"):
        exporter.export_variant(forged, "fp32", "small", fresh_root)
    assert not list(fresh_root.exports.glob("impostor-*"))


def test_cli_lists_the_impostor_as_broken_and_exports_nothing(impostor_models, tmp_path):
    home = tmp_path / "home"
    listed = sme2("models", "--json", home=home, models=impostor_models)
    assert listed.returncode == 0, listed.stderr
    by_name = {m["name"]: m for m in json.loads(listed.stdout)}
    assert by_name["tiny_seg"]["ok"] and not by_name["impostor"]["ok"]
    assert IMPOSTOR_PROBLEM in by_name["impostor"]["error"]

    exported = sme2("export", "--model", "impostor", "--size", "small", home=home, models=impostor_models)
    assert exported.returncode == 2
    assert "declares name 'tiny_seg'" in " ".join(exported.stderr.split())
    assert not (home / "exports").exists() or not list((home / "exports").iterdir())


# ---------------------------------------------------- 2. corrupt or incomplete export metadata


def test_force_repairs_a_corrupt_meta_and_without_force_the_error_says_so(tiny_fp32, fresh_root):
    tiny = registry.get("tiny_seg")
    meta_path = tiny_fp32.folder / artifact.META
    meta_path.write_text("{ this is not json")
    with pytest.raises(ExportError) as info:
        exporter.export_variant(tiny, "fp32", "small", fresh_root)
    assert str(meta_path) in info.value.message and "not valid JSON" in info.value.message
    assert "sme2 export --model tiny_seg --dtype fp32 --size small --force" in info.value.hint
    # The profile path (and the Dagster asset, which calls the same export) says the same.
    plan = session.ProfilePlan(
        model="tiny_seg", dtypes=["fp32"], targets=["host.sme2-off"], measure=Measure(size="small", runner="pybind")
    )
    with pytest.raises(ExportError, match="not valid JSON") as info:
        session.execute(plan, fresh_root)
    assert "--force" in info.value.hint

    repaired = exporter.export_variant(tiny, "fp32", "small", fresh_root, force=True)
    assert json.loads(meta_path.read_text())["pte_sha256"] == repaired.meta["pte_sha256"]
    assert exporter.export_variant(tiny, "fp32", "small", fresh_root).meta == repaired.meta


def test_incomplete_meta_and_corrupt_program_map_are_clear_errors(tiny_fp32, fresh_root):
    tiny = registry.get("tiny_seg")
    folder = tiny_fp32.folder
    meta_path, map_path = folder / artifact.META, folder / "program_map.json"
    good_meta, good_map = meta_path.read_text(), map_path.read_text()
    try:
        incomplete = json.loads(good_meta)
        del incomplete["pte_sha256"]
        meta_path.write_text(json.dumps(incomplete))
        with pytest.raises(ExportError, match=r"export_meta\.json is incomplete: it lacks pte_sha256") as info:
            exporter.export_variant(tiny, "fp32", "small", fresh_root)
        assert "--force" in info.value.hint

        # A meta that names a file outside its folder is refused, not followed.
        meta_path.write_text(json.dumps({**json.loads(good_meta), "pte": "../../escape.pte"}))
        with pytest.raises(ExportError, match="not a file of"):
            exporter.export_variant(tiny, "fp32", "small", fresh_root)

        meta_path.write_text(good_meta)
        map_path.write_text('{"pte_sha256": ')
        with pytest.raises(ExportError, match=r"program_map\.json is unreadable") as info:
            exporter.export_variant(tiny, "fp32", "small", fresh_root)
        assert "--force" in info.value.hint
    finally:
        meta_path.write_text(good_meta)
        map_path.write_text(good_map)
    assert exporter.export_variant(tiny, "fp32", "small", fresh_root).meta == json.loads(good_meta)


# ------------------------------------------------------- 3. failure logs outlive their folder


def _truncated_copy(exp: artifact.Export, where: Path) -> artifact.Export:
    """A copy of an export whose program is cut in half (its meta updated to match), so the runner
    itself fails rather than the sha256 check before it."""
    exp = artifact.load(exp.folder)  # as on disk now (an earlier test may have re-exported it)
    folder = where / exp.folder.name
    shutil.copytree(exp.folder, folder)
    pte = folder / exp.meta["pte"]
    pte.write_bytes(pte.read_bytes()[: pte.stat().st_size // 2])
    from kit.core.atomic import sha256_file

    meta = {**exp.meta, "pte_sha256": sha256_file(pte)}
    (folder / artifact.META).write_text(json.dumps(meta))
    return artifact.load(folder)


def test_a_failed_numerical_check_run_keeps_its_log(tiny_fp32, fresh_root, tmp_path):
    bad = _truncated_copy(tiny_fp32, tmp_path)
    with pytest.raises(RunnerError) as info:
        numerics.run_once(bad.pte, bad.inputs, root=fresh_root)
    log = _log_in_hint(info.value)
    assert log.is_file() and log.parent == fresh_root.logs
    assert "--model" in log.read_text()


def test_a_failed_profiling_run_keeps_its_log_after_the_staging_folder_is_gone(
    tiny_fp32, fresh_root, host, native_runner, tmp_path
):
    bad = _truncated_copy(tiny_fp32, tmp_path)
    with pytest.raises(RunnerError) as info:
        session.run_session(fresh_root, bad, host, session.Measurement(1, 2, 0, "native", native_runner))
    log = _log_in_hint(info.value)
    assert log.is_file() and log.parent == fresh_root.logs
    assert not [p for p in fresh_root.runs.iterdir() if "staging" in p.name]


def test_a_failed_runner_build_keeps_its_log(tmp_path):
    from kit.runners import build

    root = DataRoot.resolve(tmp_path / "home")
    broken = dataclasses.replace(build.host_toolchain(), cmake_args=("-DCMAKE_CXX_FLAGS=--no-such-flag-xyz",))
    with pytest.raises(RunnerError, match="native runner configure failed") as info:
        build.build_runner(root, broken, flags=("security-test-broken-flags",))
    found = re.search(r"full log: (/\S+)", info.value.hint)
    assert found and Path(found.group(1)).is_file() and Path(found.group(1)).parent == root.logs
    assert "no-such-flag-xyz" in Path(found.group(1)).read_text()


# ----------------------------------------------------- 4. model code that ends the process


@pytest.fixture(scope="module")
def exiting_models(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("exiting") / "models"
    _write_package(models, "quitter", _native_package("quitter", "sys.exit(0)"))
    _write_package(models, "vanisher", _native_package("vanisher", "return self.conv(x)", top="os._exit(0)"))
    return models


def test_sys_exit_in_forward_fails_the_export_naming_the_model(exiting_models, tmp_path):
    proc = sme2("export", "--model", "quitter", "--size", "small", home=tmp_path, models=exiting_models)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "model 'quitter' called sys.exit(0) while exporting quitter-fp32" in " ".join(proc.stderr.split())
    assert not list((tmp_path / "exports").glob("quitter-*"))


def test_os_exit_at_import_is_a_broken_package_not_a_silent_exit(exiting_models, tmp_path):
    listed = sme2("models", "--json", home=tmp_path, models=exiting_models)
    assert listed.returncode == 0 and listed.stdout.strip(), (listed.returncode, listed.stderr)
    by_name = {m["name"]: m for m in json.loads(listed.stdout)}
    assert by_name["quitter"]["ok"]  # one broken package never hides the others
    assert not by_name["vanisher"]["ok"]
    assert "model 'vanisher' called os._exit(0) while importing its package" in by_name["vanisher"]["error"]

    exported = sme2("export", "--model", "vanisher", "--size", "small", home=tmp_path, models=exiting_models)
    assert exported.returncode == 2 and "os._exit(0)" in exported.stderr


def test_a_parallel_export_worker_that_dies_is_a_failure_naming_the_model(tmp_path, fresh_root):
    models = tmp_path / "models"
    _write_package(models, "killer", _native_package("killer", "os.kill(os.getpid(), signal.SIGKILL)"))
    jobs = [("killer", "fp32", "small"), ("killer", "int8", "small")]
    with pytest.raises(ExportError, match="export worker for model 'killer' ended without a result") as info:
        batch.export_many(jobs, fresh_root, workers=2, models_dir=str(models))
    assert "sme2 export --model killer" in info.value.hint
    assert not list(fresh_root.exports.glob("killer-*"))


# --------------------------------------- 5. nonsensical parameters, NaN outputs, trace -o DIR


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("threads", 0, "invalid thread count 0"),
        ("threads", -2, "invalid thread count -2"),
        ("threads", 1025, "invalid thread count 1025"),  # one above the bound, 1024
        ("timeout_s", 0, "invalid timeout 0"),
        ("timeout_s", -5.0, "invalid timeout -5.0"),
        ("timeout_s", float("nan"), "invalid timeout nan"),
        ("iterations", 0, "invalid iterations 0"),
        ("iterations", -1, "invalid iterations -1"),
        ("warmup", -1, "invalid warmup -1"),
    ],
)
def test_run_parameters_that_make_no_sense_are_refused(tiny_fp32, field, value, message):
    kwargs = {"pte": tiny_fp32.pte, "inputs": tiny_fp32.inputs, field: value}
    with pytest.raises(Sme2Error, match=re.escape(message)):
        invoke.RunRequest(**kwargs)
    plan_value = [value] if field == "threads" else value  # a plan holds a list of thread counts
    with pytest.raises(Sme2Error, match=re.escape(message)) as info:  # the one rule, the same message
        Measure.of(**{field: plan_value})
    assert f"{field}:" in info.value.message


def test_thread_lists_are_parsed_and_checked():
    assert limits.MAX_THREADS == 1024  # more than any Arm CPU has cores
    assert limits.parse_threads("1, 4") == [1, 4]
    for text, message in (("0", "invalid thread count 0"), ("abc", "invalid thread count 'abc'"), ("1,9999", "9999")):
        with pytest.raises(Sme2Error, match=re.escape(message)):
            limits.parse_threads(text)


@pytest.mark.parametrize(
    "args, message",
    [
        (("--threads", "0"), "invalid thread count 0"),
        (("--timeout", "-1"), "invalid timeout -1.0"),
    ],
)
def test_cli_refuses_nonsensical_run_parameters(tmp_path, args, message):
    proc = sme2("profile", "--size", "small", *args, home=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_nan_outputs_are_reported_as_nan():
    finite = [np.ones((2, 3), dtype=np.float32)]
    with_nan = [np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0]], dtype=np.float32)]
    check = numerics.numerical_check(with_nan, finite, "fp32")
    assert not check["passed"] and check["nan_outputs"] == 1
    error = numerics.non_finite_error(check, "tiny_seg-fp32", Path("models/tiny_seg/model.py"))
    assert error.message == (
        "the output of tiny_seg-fp32 contains NaN (1 of 6 values), where the eager model's output is finite"
    )
    assert numerics.non_finite_error(numerics.numerical_check(finite, finite, "fp32"), "x", Path(".")) is None


def test_an_export_whose_outputs_are_nan_says_so(tmp_path, fresh_root):
    models = tmp_path / "models"
    _write_package(models, "nan_net", _native_package("nan_net", "return torch.sqrt(self.conv(x) - 100.0)"))
    with pytest.raises(ExportError) as info:
        exporter.export_variant(registry.get("nan_net", models), "fp32", "small", fresh_root)
    assert re.match(r"the output of nan_net-fp32 contains NaN \((\d+) of \1 values\)", info.value.message)
    assert "the eager model's output does too" in info.value.message
    assert str(models / "nan_net" / "model.py") in info.value.hint
    assert not list(fresh_root.exports.glob("nan_net-*"))


def test_trace_into_an_existing_folder_names_the_file_from_the_run(
    tiny_fp32, fresh_root, host, native_runner, tmp_path
):
    exp = artifact.load(tiny_fp32.folder)  # as on disk now (an earlier test may have re-exported it)
    run = session.run_session(fresh_root, exp, host, session.Measurement(1, 3, 1, "native", native_runner))
    out_dir = tmp_path / "traces"
    out_dir.mkdir()
    proc = sme2("trace", str(run.run_dir), "-o", str(out_dir), home=fresh_root.path)
    assert proc.returncode == 0, proc.stderr
    written = out_dir / f"{run.record.run_id}.json"
    assert out_dir.is_dir() and json.loads(written.read_text())["traceEvents"]
    assert [p.name for p in out_dir.iterdir()] == [written.name]


# ---- a same-named package from another models folder


def test_a_same_named_package_elsewhere_gets_its_own_export_and_history(fresh_root, tmp_path, native_runner):
    """`--models-dir other/` with another tiny_seg: its own export folder (the bundled export is
    untouched), its own run key, and a comparison of the two programs under one label is refused."""
    from kit.analysis import compare
    from kit.devices import inventory
    from kit.store.ingest import ingest_run
    from kit.store.warehouse import Warehouse

    other = tmp_path / "other_models"
    shutil.copytree(
        registry.DEFAULT_MODELS_DIR / "tiny_seg", other / "tiny_seg", ignore=shutil.ignore_patterns("__pycache__")
    )
    changed = TINY_SEG_SOURCE.replace('"small": {"resolution": 64}', '"small": {"resolution": 48}')
    assert changed != TINY_SEG_SOURCE
    (other / "tiny_seg" / "model.py").write_text(changed)  # another program under the same name
    bundled_pkg, other_pkg = registry.get("tiny_seg"), registry.get("tiny_seg", other)
    assert bundled_pkg.source_id == "" and re.fullmatch(r"[0-9a-f]{8}", other_pkg.source_id)

    bundled = exporter.export_variant(bundled_pkg, "fp32", "small", fresh_root)
    before = bundled.meta["pte_sha256"]
    theirs = exporter.export_variant(other_pkg, "fp32", "small", fresh_root)
    assert theirs.folder != bundled.folder and theirs.folder.name.endswith(other_pkg.source_id)
    assert artifact.find(fresh_root, bundled.variant, "small").meta["pte_sha256"] == before  # untouched
    assert theirs.meta["package"]["source_id"] == other_pkg.source_id

    host = inventory.resolve("host.sme2-off", fresh_root)
    runs = [
        session.run_session(
            fresh_root, exp, host, session.Measurement(threads=1, iterations=3, warmup=1, binary=native_runner)
        )
        for exp in (bundled, theirs)
    ]
    assert runs[0].record.run_key != runs[1].record.run_key and runs[1].record.run_key.endswith(other_pkg.source_id)
    for r in runs:
        ingest_run(fresh_root, r.run_dir)
    assert runs[0].record.pte_sha256 != runs[1].record.pte_sha256
    with pytest.raises(Sme2Error, match="ran different programs"):
        compare.compare_ids(Warehouse.at(fresh_root), runs[0].record.run_id, runs[1].record.run_id)
