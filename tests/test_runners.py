"""Both runners, for real, and every way a run can go wrong."""

import json
import os
import random

import pytest

from kit.core.errors import RunnerError
from kit.core.platforms import HOST_PLATFORM
from kit.devices.transports.local import LocalTransport
from kit.runners import build, invoke, tensorfile


def _req(exp, **kw):
    return invoke.RunRequest(
        pte=exp.pte,
        inputs=exp.inputs,
        iterations=kw.pop("iterations", 5),
        warmup=kw.pop("warmup", 1),
        threads=1,
        expected_sha256=kw.pop("sha", exp.meta["pte_sha256"]),
        **kw,
    )


def test_native_build_is_cached(home, native_runner):
    again = build.build_runner(home)
    assert again.path == native_runner.path and again.sha256 == native_runner.sha256
    assert again.path.stat().st_mtime == native_runner.path.stat().st_mtime
    m = native_runner.manifest
    assert m["executorch_version"] == "1.5.1" and m["platform"] == HOST_PLATFORM and len(m["binary_sha256"]) == 64


def test_a_fresh_data_root_takes_the_runner_from_the_machine_cache(tmp_path, monkeypatch):
    from kit.core.home import DataRoot

    monkeypatch.setenv("SME2_BUILD_CACHE", str(tmp_path / "cache"))
    flags = ("machine-cache-test",)  # a key of its own: this test compiles it once
    first = build.build_runner(DataRoot.resolve(tmp_path / "a"), flags=flags)
    assert "cache" not in first.manifest and (first.folder / "build.log").exists()
    # A second root restores it without compiling: no compiler is needed any more.
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    second = build.build_runner(DataRoot.resolve(tmp_path / "b"), build.host_toolchain(), flags=flags)
    assert second.folder != first.folder and second.sha256 == first.sha256
    assert second.manifest["cache"]["entry"].startswith(str(tmp_path / "cache" / "runners"))
    assert os.access(second.path, os.X_OK) and second.lib_dir == first.lib_dir
    assert (second.folder / "lib").resolve() == first.lib_dir.resolve()
    # A damaged entry is not restored: the next root compiles (and fails here, with no compiler).
    (entry,) = (tmp_path / "cache" / "runners").glob(f"{first.folder.name}-*")
    (entry / build.BINARY).write_bytes(b"not the runner")
    with pytest.raises(RunnerError, match="no C\\+\\+ compiler"):
        build.build_runner(DataRoot.resolve(tmp_path / "c"), build.host_toolchain(), flags=flags)


@pytest.mark.slow  # the pybind runner is a Python child importing torch and executorch, twice
def test_native_and_pybind_agree_on_operators_and_outputs(exports, native_runner, tmp_path):
    from kit.trace import etdump

    exp = exports["fp32"]
    results = {}
    for kind in invoke.RUNNER_KINDS:
        out = invoke.run_program(kind, _req(exp, etdump=True), tmp_path / kind, LocalTransport("host"), native_runner)
        tr = etdump.ingest(out.etdump, exp.program_map, warmup=1)
        results[kind] = (out, tr)
        r = out.result
        assert len(r["latencies_ms"]) == 5 and len(r["warmup_ms"]) == 1
        assert r["load_ms"] >= 0 and r["first_inference_ms"] > 0 and r["peak_rss_kb"] > 1000
    (n_out, n_tr), (p_out, p_tr) = results["native"], results["pybind"]
    assert set(n_tr.operators.op_type) == set(p_tr.operators.op_type)
    assert n_out.result["checksum"]["count"] == p_out.result["checksum"]["count"] == 64 * 64
    assert n_out.result["checksum"]["sum"] == pytest.approx(p_out.result["checksum"]["sum"], rel=1e-5, abs=1e-4)
    a, b = tensorfile.load(n_out.outputs), tensorfile.load(p_out.outputs)
    assert abs(a[0] - b[0]).max() < 1e-5


def test_timing_run_has_no_etdump(exports, native_runner, tmp_path):
    out = invoke.run_program("native", _req(exports["fp32"]), tmp_path, LocalTransport("host"), native_runner)
    assert out.etdump is None and not list(tmp_path.glob("*.etdp"))
    assert json.loads((tmp_path / "timing.json").read_text())["etdump"] is None


def _corrupt_copy(exp, tmp_path):
    data = bytearray(exp.pte.read_bytes())
    rnd = random.Random(64)
    for i in range(64, 320):  # inside the program flatbuffer, header intact
        data[i] = rnd.randrange(256)
    bad = tmp_path / "corrupt.pte"
    bad.write_bytes(bytes(data))
    return bad


def test_corrupted_program_is_caught_by_sha256_before_running(exports, native_runner, tmp_path):
    exp = exports["fp32"]
    req = _req(exp)
    req.pte = _corrupt_copy(exp, tmp_path)
    with pytest.raises(RunnerError, match="does not match its export_meta.json"):
        invoke.run_program("native", req, tmp_path / "out", LocalTransport("host"), native_runner)


# The pybind child imports torch (about 20 s on 2 cores): full tier.
@pytest.mark.parametrize(
    "kind", [k if k == "native" else pytest.param(k, marks=pytest.mark.slow) for k in invoke.RUNNER_KINDS]
)
def test_corrupted_program_body_crashes_the_child_not_us(exports, native_runner, tmp_path, kind):
    exp = exports["fp32"]
    req = _req(exp, sha=None)
    req.pte = _corrupt_copy(exp, tmp_path)
    with pytest.raises(RunnerError, match=r"crashed with SIGSEGV.*corrupt\.pte") as info:
        invoke.run_program(kind, req, tmp_path / "out", LocalTransport("host"), native_runner)
    assert "re-export" in info.value.hint
    assert os.getpid() > 0  # still here


def test_truncated_program_fails_cleanly(exports, native_runner, tmp_path):
    exp = exports["fp32"]
    bad = tmp_path / "truncated.pte"
    bad.write_bytes(exp.pte.read_bytes()[:1000])
    req = _req(exp, sha=None)
    req.pte = bad
    with pytest.raises(RunnerError, match=r"failed on host \(exit 2\) running truncated\.pte"):
        invoke.run_program("native", req, tmp_path / "out", LocalTransport("host"), native_runner)


def test_runner_hang_is_a_timeout_error(exports, native_runner, tmp_path):
    req = _req(exports["fp32"], iterations=100_000, timeout_s=1.5)
    with pytest.raises(RunnerError, match="hung on host: no result after 2s"):
        invoke.run_program("native", req, tmp_path, LocalTransport("host"), native_runner)


def test_missing_compiler_is_a_clear_error_and_builds_nothing(home, monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    tc = build.host_toolchain()
    with pytest.raises(RunnerError, match="no C\\+\\+ compiler.*nonexistent") as info:
        build.build_runner(home, tc, flags=("missing-compiler-test",))
    assert "apt-get install g++" in info.value.hint
    assert not [p for p in home.runners.iterdir() if "staging" in p.name]
