"""Experiment configs: ours (TOML) and Arm's kit's (JSON) as they are, validated with errors naming the
file and key; run through `sme2 run --config` / `sme2 profile --config` on the host and the emulated
pair with runner_path binaries (our runner in its executor_runner-compatible mode); the same file
driving a Dagster run through the config sensor and the nightly schedule."""

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from tests.clirun import sme2

from kit import pipeline
from kit.devices.transports.qemu import cpu_args
from kit.core.errors import RunnerError, Sme2Error
from kit.devices import inventory
from kit.profile import config, experiments
from kit.profile.runrecord import RunRecord
from kit.runners import recipes
from kit.store.warehouse import Warehouse
from kit.trace import etdump
from sme2_assets.definitions import defs
from sme2_assets.partitions import CONFIG
from sme2_assets.resources import Sme2
from tests.dagsterctx import sensor_result, schedule_requests

REPO = Path(__file__).resolve().parent.parent
ARM_REPO = Path("/work/.mirror/ArmDeveloperEcosystem+sme-executorch-profiling/repo")


def _arm_config(model: str, output_root: str) -> dict:
    """Arm's kit's mac configs, key for key (configs/templates/mac_template.json and
    configs/examples/mac_mobilenet_fp16.json differ only in model and output_root)."""
    return {
        "model": model,
        "output_root": output_root,
        "experiments": [
            {
                "name": "mac_sme2_on",
                "runner_path": "executorch/cmake-out/mac-arm64/executor_runner",
                "mode": "timing",
                "runs": 10,
                "warmup": 1,
                "threads": [1],
            },
            {
                "name": "mac_sme2_off",
                "runner_path": "executorch/cmake-out/mac-arm64-sme2-off/executor_runner",
                "mode": "timing",
                "runs": 10,
                "warmup": 1,
                "threads": [1],
            },
        ],
        "analysis": {"compare_pairs": []},
    }


MAC_TEMPLATE = _arm_config("REPLACE_WITH_PATH_TO_MODEL_PTE", "out_<model>/runs/mac")
MAC_EXAMPLE = _arm_config("out_mobilenet/artifacts/mobilenet_v3_small_xnnpack_fp16.pte", "out_mobilenet/runs/mac")


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) if isinstance(obj, dict) else obj)
    return path


@pytest.mark.skipif(not ARM_REPO.exists(), reason="Arm's kit is not mirrored here")
def test_the_inline_arm_configs_are_arms_own():
    for name, ours in (
        ("configs/templates/mac_template.json", MAC_TEMPLATE),
        ("configs/examples/mac_mobilenet_fp16.json", MAC_EXAMPLE),
    ):
        text = subprocess.run(
            ["git", "-C", str(ARM_REPO), "show", f"HEAD:model_profiling/{name}"], capture_output=True, text=True
        ).stdout
        assert json.loads(text) == ours, name


# ---------------------------------------------------------------- validation (no runs)


def test_errors_name_the_file_and_the_key(tmp_path):
    runner = tmp_path / "executor_runner"
    runner.write_text("#!/bin/sh\n")
    runner.chmod(0o755)
    pte = tmp_path / "m_xnnpack_fp32.pte"
    pte.write_bytes(b"not checked at load")
    bad = json.loads(json.dumps(MAC_TEMPLATE))
    bad["model"] = str(pte)
    for e in bad["experiments"]:
        e["runner_path"] = str(runner)
    bad["experiments"][1]["runs"] = 0
    path = _write(tmp_path / "configs" / "mac.json", bad)
    with pytest.raises(config.ConfigError) as info:
        config.load(path)
    assert (
        f"{path}: experiments[1].runs invalid iterations 0 (use a whole number from 1 to 100,000)" in info.value.message
    )

    bad["experiments"][1]["runs"] = 10
    bad["experiments"][0]["warmups"] = 3  # a typo
    with pytest.raises(config.ConfigError, match=r"experiments\[0\]\.warmups is not a known key") as info:
        config.load(_write(path, bad))
    assert "warmup" in info.value.hint

    del bad["experiments"][0]["warmups"]
    bad["analysis"]["compare_pairs"] = [
        {"baseline": {"experiment": "mac_sme2_off", "threads": 1}, "candidate": {"experiment": "nope", "threads": 1}}
    ]
    with pytest.raises(config.ConfigError, match=r"compare_pairs\[0\]\.candidate: no experiment named 'nope'"):
        config.load(_write(path, bad))

    bad["analysis"]["compare_pairs"] = []
    bad["experiments"][0]["cpu_affinity"] = "cpu7"
    with pytest.raises(config.ConfigError, match=r"experiments\[0\]\.cpu_affinity 'cpu7' is not a CPU mask"):
        config.load(_write(path, bad))

    bad["experiments"][0]["cpu_affinity"] = "0x80"
    bad["experiments"][1]["runner_path"] = "executorch/cmake-out/missing/executor_runner"
    with pytest.raises(config.ConfigError, match=r"experiments\[1\]\.runner_path = .* does not exist"):
        config.load(_write(path, bad))

    # The template as Arm ships it: the placeholder is named, not run.
    with pytest.raises(config.ConfigError, match="model = 'REPLACE_WITH_PATH_TO_MODEL_PTE' is a template placeholder"):
        config.load(_write(tmp_path / "mac_template.json", MAC_TEMPLATE))

    _write(tmp_path / "bad.toml", 'model = "tiny_seg"\n[[experiments]]\nname = "a"\nthreads = [1, 1]\n')
    with pytest.raises(config.ConfigError, match=r"bad.toml: experiments\[0\]\.threads must not repeat"):
        config.load(tmp_path / "bad.toml")
    _write(tmp_path / "bad.toml", 'model = "tiny_seg"\n[[experiments]]\nname = "a"\nextra_args = ["-v"]\n')
    with pytest.raises(config.ConfigError, match="extra_args are passed to an executor_runner-compatible binary"):
        config.load(tmp_path / "bad.toml")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(_write(tmp_path / "bad.toml", "model = \n"))


def test_arm_semantics_masks_flags_and_paths(tmp_path):
    ok = json.loads(json.dumps(MAC_EXAMPLE))
    ok["experiments"][0]["cpu_affinity"] = "0xF0"
    ok["experiments"][1]["extra_args"] = ["--verbose-runner", "executorch/cmake-out/mac-arm64/executor_runner", "-x"]
    cwd = tmp_path / "repo"
    _write(cwd / "model_profiling" / "configs" / "examples" / "mac_mobilenet_fp16.json", ok)
    _write(cwd / "out_mobilenet" / "artifacts" / "mobilenet_v3_small_xnnpack_fp16.pte", "x")
    for preset in ("mac-arm64", "mac-arm64-sme2-off"):
        _write(cwd / "executorch" / "cmake-out" / preset / "executor_runner", "#!/bin/sh\n").chmod(0o755)
    cfg = config.load(cwd / "model_profiling/configs/examples/mac_mobilenet_fp16.json", cwd=cwd)
    on, off = cfg.experiments
    assert cfg.pte == (cwd / "out_mobilenet/artifacts/mobilenet_v3_small_xnnpack_fp16.pte").resolve()
    assert cfg.output_root == (cwd / "out_mobilenet/runs/mac").resolve() and cfg.device == "host"
    assert (on.flag_from_name, off.flag_from_name) == (True, False) and on.target is None
    assert on.cpus == "4,5,6,7" and on.runner == off.runner == "path"
    # Arm's perf_runner option names the kernel-log binary; the rest goes to the binary itself.
    assert off.kernel_log_runner == (cwd / "executorch/cmake-out/mac-arm64/executor_runner").resolve()
    assert off.extra_args == ("-x",)
    assert config.cpu_list("0x80") == "7" and config.cpu_list(3) == "3" and config.cpu_list("4-7") == "4-7"
    # <model> in Arm's output_root is the model's name.
    tmpl = json.loads(json.dumps(MAC_TEMPLATE))
    tmpl["model"] = "out_mobilenet/artifacts/mobilenet_v3_small_xnnpack_fp16.pte"
    cfg = config.load(_write(cwd / "t.json", tmpl), cwd=cwd)
    assert cfg.output_root == (cwd / "out_mobilenet_v3_small/runs/mac").resolve()


def test_bundled_configs_validate():
    minimal = config.load(REPO / "configs" / "host-minimal.toml")
    assert minimal.model == "tiny_seg" and minimal.experiments[0].target.key == "host.sme2-off"
    pair = config.load(REPO / "configs" / "emulated-pair.toml")
    assert {e.target.key for e in pair.experiments} == {"armv9-qemu.sme2-on", "armv9-qemu.sme2-off"}
    # The Mac and phone configs: SME2 on and off of one device at 1 and 4 threads, compared per thread count.
    for name, device in (("mac-m4.toml", "host"), ("android-phone.toml", "phone")):
        cfg = config.load(REPO / "configs" / name)
        assert {(e.target.key, tuple(e.threads)) for e in cfg.experiments} == {
            (f"{device}.sme2-on", (1, 4)),
            (f"{device}.sme2-off", (1, 4)),
        }
        assert len(cfg.compare_pairs) == 2 and cfg.size == "full"
    # The Arm-format example names files that `sme2 export --outdir` and `build-runner --link` make.
    with pytest.raises(config.ConfigError, match="out_tiny_seg/artifacts/tiny_seg_xnnpack_fp32.pte"):
        config.load(REPO / "configs" / "arm-kit-host.json", cwd=REPO / "no-such-folder")


def test_a_runner_for_another_platform_is_refused(tmp_path, home, native_runner, exports):
    body = (
        f'pte = "{exports["fp32"].pte}"\n[[experiments]]\nname = "a"\ntarget = "armv9-qemu.sme2-on"\n'
        f'runner_path = "{native_runner.path}"\n'
    )
    cfg = config.load(_write(tmp_path / "x86_on_arm.toml", body))
    with pytest.raises(Sme2Error, match="no experiment named nope"):
        experiments.run(cfg, home, only=["nope"])
    with pytest.raises(RunnerError, match=r"is a linux-x86_64 binary; device 'armv9-qemu' is linux-aarch64"):
        experiments.run(cfg, home)
    script = _write(tmp_path / "not_executable", "#!/bin/sh\n")
    cfg = config.load(_write(tmp_path / "noexec.toml", body.replace(str(native_runner.path), str(script))))
    with pytest.raises(RunnerError, match=r"experiments\[0\]\.runner_path: runner .* is not executable"):
        experiments.run(cfg, home)


# ---------------------------------------------------------------- runs on the host


@pytest.mark.slow  # Arm's template's runs: ~30 s on 2 cores (full tier)
def test_arms_mac_template_runs_on_the_host(tmp_path, home, exports, native_runner):
    """Arm's template with its two paths filled in: model = a .pte we exported, runner_path = our
    runner (executor_runner-compatible mode). This host has no SME2: both runs are recorded as
    host.sme2-off, the 'sme2_on' claim is noted; the binary is tracked by its sha256."""
    pte = shutil.copy(exports["fp32"].pte, tmp_path / "tiny_seg_xnnpack_fp32.pte")
    filled = json.loads(json.dumps(MAC_TEMPLATE))
    filled["model"] = str(pte)
    for e in filled["experiments"]:
        e["runner_path"] = str(native_runner.path)
    path = _write(tmp_path / "configs" / "templates" / "mac_template.json", filled)
    out = json.loads(sme2("run", "--config", str(path), "--json", home=home.path, cwd=tmp_path).stdout)
    runs = {r["experiment"]: r for r in out["runs"]}
    assert set(runs) == {"mac_sme2_on", "mac_sme2_off"}
    for r in runs.values():
        assert r["target"] == "host.sme2-off" and r["runner_recipe"] == "path"
        assert r["runner_sha256"] == native_runner.sha256 and r["iterations"] == 10 and r["warmup"] == 1
        assert r["timing_source"].startswith("runner") and r["e2e_median_ms"] > 0
    assert any("asks for SME2" in n for n in runs["mac_sme2_on"]["notes"]) and not runs["mac_sme2_off"]["notes"]
    # The .pte is one of our exports: its ETRecord-backed program map and inputs are used.
    rec = RunRecord.load(Path(runs["mac_sme2_off"]["run_dir"]))
    assert rec.size == "small" and rec.pte_sha256 == exports["fp32"].meta["pte_sha256"]
    assert rec.conditions["runner_path"] == str(native_runner.path) and rec.conditions["recipe"] == "path"
    stored = Warehouse.at(home).query(
        "SELECT runner, runner_recipe, runner_sha256 FROM runs WHERE run_id IN (?, ?)",
        [runs["mac_sme2_on"]["run_id"], runs["mac_sme2_off"]["run_id"]],
    )
    assert len(stored) == 2 and set(stored.runner_recipe) == {"path"}
    assert set(stored.runner_sha256) == {native_runner.sha256}
    # output_root "out_<model>/runs/mac" relative to the current directory, <model> filled in.
    summary = tmp_path / "out_tiny_seg" / "runs" / "mac" / experiments.SUMMARY_FILE
    assert json.loads(summary.read_text())["config_file"] == str(path)


NO_JSON_WRAPPER = """#!/bin/sh
# An executor_runner that prints no timing JSON: our runner with that line removed.
out=$("{real}" "$@") || {{ status=$?; printf '%s\\n' "$out"; exit $status; }}
printf '%s\\n' "$out" | grep -v '^SME2_RUNNER_JSON'
"""


@pytest.mark.slow  # ~30 s on 2 cores; the Mac template's run stays in the fast tier
def test_arms_example_config_runs_unchanged(tmp_path, home, exports, native_runner):
    """configs/examples/mac_mobilenet_fp16.json, byte for byte, from a folder laid out like Arm's
    kit: the .pte under out_mobilenet/artifacts/, runners under executorch/cmake-out/<preset>/.
    The SME2-off runner prints no timing JSON (as upstream executor_runner): its iterations are
    timed from the ETDump's Method::execute events."""
    cwd = tmp_path / "arm-kit"
    cfg_path = _write(cwd / "model_profiling/configs/examples/mac_mobilenet_fp16.json", MAC_EXAMPLE)
    shutil.copy(exports["fp16"].pte, _write(cwd / "out_mobilenet/artifacts/mobilenet_v3_small_xnnpack_fp16.pte", ""))
    sme2("build-runner", "--link", "executorch/cmake-out/mac-arm64/executor_runner", home=home.path, cwd=cwd)
    assert (cwd / "executorch/cmake-out/mac-arm64/executor_runner").resolve() == native_runner.path
    wrapper = _write(
        cwd / "executorch/cmake-out/mac-arm64-sme2-off/executor_runner", NO_JSON_WRAPPER.format(real=native_runner.path)
    )
    wrapper.chmod(0o755)
    # `sme2 profile --config` is `sme2 run --config`.
    out = json.loads(
        sme2(
            "profile",
            "--config",
            "model_profiling/configs/examples/mac_mobilenet_fp16.json",
            "--json",
            home=home.path,
            cwd=cwd,
        ).stdout
    )
    assert json.loads(cfg_path.read_text()) == MAC_EXAMPLE  # unchanged
    runs = {r["experiment"]: r for r in out["runs"]}
    on, off = runs["mac_sme2_on"], runs["mac_sme2_off"]
    assert on["dtype"] == off["dtype"] == "fp16"
    assert on["timing_source"].startswith("runner") and off["timing_source"] == "etdump Method::execute"
    assert off["runner_sha256"] != on["runner_sha256"]  # each binary is tracked by its own sha256
    folder = Path(off["run_dir"])
    timing = json.loads((folder / "timing.json").read_text())
    trace = etdump.ingest(folder / "etdump.etdp", warmup=1)
    assert timing["latencies_ms"] == pytest.approx(list(trace.method_ms)) and len(timing["latencies_ms"]) == 10
    assert timing["reported_total_ms"] > 0  # executor_runner's "Model executed successfully" line
    assert (cwd / "out_mobilenet/runs/mac" / experiments.SUMMARY_FILE).is_file()
    # A plan option beside --config is refused, not silently ignored.
    proc = sme2("profile", "--config", str(cfg_path), "--iterations", "5", home=home.path, cwd=cwd, check=False)
    assert proc.returncode == 2 and "--iterations cannot be combined with --config" in proc.stderr


@pytest.mark.qemu
@pytest.mark.slow
def test_our_config_runs_the_emulated_pair_with_runner_path(tmp_path, home, qemu_setup):
    """A config of ours naming the armv9-qemu targets, both with runner_path = our aarch64 runner in
    its executor_runner-compatible mode: SME2 kernels only with SME2 on, and the pair compared."""
    aarch64 = recipes.runner_for(inventory.resolve("armv9-qemu.sme2-on", home), home, "native")
    body = f"""
model = "tiny_seg"
dtypes = ["fp32"]
size = "small"
output_root = "{tmp_path / "out"}"

[[experiments]]
name = "qemu_on"
target = "armv9-qemu.sme2-on"
runner_path = "{aarch64.path}"
runs = 5
warmup = 1

[[experiments]]
name = "qemu_off"
target = "armv9-qemu.sme2-off"
runner_path = "{aarch64.path}"
runs = 5
warmup = 1

[analysis]
compare_pairs = [{{ baseline = {{ experiment = "qemu_off" }}, candidate = {{ experiment = "qemu_on" }}, label = "SME2" }}]
"""
    path = _write(tmp_path / "emulated.toml", body)
    out = json.loads(sme2("run", "--config", str(path), "--json", home=home.path, cwd=tmp_path).stdout)
    runs = {r["experiment"]: r for r in out["runs"]}
    on, off = runs["qemu_on"], runs["qemu_off"]
    assert (on["target"], off["target"]) == ("armv9-qemu.sme2-on", "armv9-qemu.sme2-off")
    assert on["emulated"] and off["emulated"] and on["runner_recipe"] == "path"
    assert on["sme2_kernels_seen"] >= 2 and off["sme2_kernels_seen"] == 0
    cpu = {r: RunRecord.load(Path(runs[r]["run_dir"])).conditions["cpu_setting"] for r in runs}
    assert cpu == {"qemu_on": " ".join(cpu_args(True)), "qemu_off": " ".join(cpu_args(False))}
    (pair,) = out["comparisons"]
    (fp32,) = pair["by_dtype"]
    assert pair["label"] == "SME2" and fp32["speedup"] > 0 and fp32["speedup_ci95"][0] <= fp32["speedup_ci95"][1]


# ---------------------------------------------------------------- the same file in Dagster


MINIMAL = """model = "tiny_seg"
dtypes = ["fp32"]
size = "small"

[[experiments]]
name = "host"
target = "host.sme2-off"
runs = 5
warmup = 1
"""


def test_a_config_dropped_in_the_configs_folder_is_run_by_dagster(home, exports, native_runner):
    folder = home.configs
    for stale in folder.iterdir():
        stale.unlink()
    _write(folder / "nightly_host.toml", MINIMAL)
    _write(folder / "broken.json", '{"model": "tiny_seg", "experiments": []}')
    resources = {"sme2": Sme2()}  # the data root is $SME2_HOME (the test session's)
    sensor = defs.resolve_sensor_def("experiment_configs")
    with dg.instance_for_test() as instance:
        result = sensor_result(sensor, instance=instance, resources=resources)
        assert result.dynamic_partitions_requests[0].partition_keys == ["nightly_host"]
        (request,) = result.run_requests
        assert request.partition_key == "nightly_host" and request.tags["sme2/cpu"] == "local"
        assert "experiments must have at least 1 entries" in json.loads(result.cursor)["problems"]["broken.json"]
        instance.add_dynamic_partitions(CONFIG.name, ["nightly_host"])
        done = defs.resolve_job_def("experiment_configs").execute_in_process(
            partition_key="nightly_host", instance=instance, tags=request.tags
        )
        assert done.success
        mat = instance.get_latest_materialization_event(dg.AssetKey("config_experiments")).asset_materialization
        run_ids = [r.data["run_id"] for r in mat.metadata["runs"].records]
        stored = Warehouse.at(home).query(
            "SELECT count(*) AS n FROM runs WHERE list_contains(?, run_id) AND (conditions->>'config') = 'nightly_host'",
            [run_ids],
        )
        assert len(run_ids) == 1 and stored.n[0] == 1
        # Unchanged: nothing new. Changed: run again.
        again = sensor_result(sensor, instance=instance, cursor=result.cursor, resources=resources)
        assert again.run_requests == []
        _write(folder / "nightly_host.toml", MINIMAL.replace("runs = 5", "runs = 6"))
        changed = sensor_result(sensor, instance=instance, cursor=result.cursor, resources=resources)
        assert [r.partition_key for r in changed.run_requests] == ["nightly_host"]
        # The nightly schedule re-runs every config partition.
        nightly = schedule_requests(
            defs.resolve_schedule_def("nightly_configs"),
            instance=instance,
            scheduled_execution_time=datetime.datetime(2026, 12, 1, 2, 0),
            repository_def=defs.get_repository_def(),
            resources=resources,
        )
        assert [(r.partition_key, r.run_key) for r in nightly] == [
            ("nightly_host", "nightly|2026-12-01|config|nightly_host")
        ]
    for f in folder.iterdir():
        f.unlink()


def test_xnntrace_experiments_keep_the_kernel_log(tmp_path, home, exports, native_runner):
    """Arm's xnntrace mode: one execution with XNN_LOG_LEVEL=5, its log and the microkernels it
    names. The wheel's XNNPACK logs nothing, and the note says which build would."""
    body = f"""
pte = "{exports["fp32"].pte}"
output_root = "{tmp_path / "out"}"

[[experiments]]
name = "trace_path"
target = "host.sme2-off"
runner_path = "{native_runner.path}"
mode = "xnntrace"

[[experiments]]
name = "trace_native"
target = "host.sme2-off"
mode = "xnntrace"
"""
    done = pipeline.run_config(_write(tmp_path / "xnntrace.toml", body), home)
    assert [r.experiment for r in done.runs] == ["trace_path", "trace_native"]
    for r in done.runs:
        assert r.result is None and r.kernel_log["log"].is_file() and r.kernel_log["kernels_csv"].is_file()
        assert "built without logging" in r.kernel_log["note"]
    assert "--num_executions 1" in " ".join(done.runs[0].kernel_log["log"].read_text().split()[:12])
    summary = json.loads(done.summary.read_text())
    assert [r["mode"] for r in summary["runs"]] == ["xnntrace", "xnntrace"] and summary["comparisons"] == []
