"""Android up to the adb boundary: logcat kernel logs and simpleperf profiles, through the real adb
transport talking to tests/fakeadb.py (a "phone" whose shell is this machine's, so the real runner
runs) with the recorded logcat and simpleperf outputs of tests/data/android/; and the parsers on
those recordings. No phone is reachable here (docs/targets.md, "What a first phone run must show")."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

from kit import pipeline
from kit.core.errors import Sme2Error
from kit.core.platforms import HOST_PLATFORM
from kit.core.settings import Measure
from kit.devices import logcat
from kit.profile import session
from kit.store.warehouse import Warehouse
from kit.trace import simpleperf

DATA = Path(__file__).parent / "data" / "android"


# ---------------------------------------------------------------- parsers on recordings


def test_only_the_runners_logcat_lines_are_kept():
    text = (DATA / "logcat-threadtime.txt").read_text().replace("{pid}", "4242")
    lines = logcat.runner_lines(text, 4242)
    assert len(lines) == 4 and all("another_app" not in line and "ActivityManager" not in line for line in lines)
    assert lines[1] == "D XNNPACK: Using igemm microkernel 'xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128'"
    pid, rest = logcat.split_pid("SME2_RUNNER_PID=4242\nwarning: x\n")
    assert pid == 4242 and rest == "warning: x\n"
    assert logcat.split_pid("SME2_RUNNER_PID=4242; rm -rf /\n")[0] is None  # only digits
    assert logcat.read_argv(["adb", "-s", "S"], 4242) == ["adb", "-s", "S", "logcat", "-d", "-v", "threadtime",
                                                        "--pid", "4242"]  # fmt: skip


def test_simpleperf_report_sample_text_becomes_stacks_a_flame_graph_and_a_stack_chart(tmp_path):
    samples = simpleperf.parse_report_sample((DATA / "simpleperf-report-sample.txt").read_text())
    assert [len(s.frames) for s in samples] == [3, 3, 3, 1]
    assert samples[0].frames == ["xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128", "xnn_run_operator", "main"]
    assert samples[3].frames == ["unknown[+9a0] (libc.so)"]
    stacks = simpleperf.folded(samples)
    assert stacks["sme2_runner;main;xnn_run_operator;xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128"] == 500000
    hottest = dict(simpleperf.self_time(samples))
    assert hottest["xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128"] == pytest.approx(0.5)
    # Stack chart of thread 4242: samples at 0, 250, 500 us, each lasting until the next (the last one period).
    slices = {(e["name"], e["tid"]): (e["ts"], e["dur"]) for e in simpleperf.chrome_events(samples) if e["ph"] == "X"}
    assert slices[("main", 4242)] == (0, 750)
    assert slices[("xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128", 4242)] == (0, 500)
    assert slices[("xnn_x32_transposec_ukernel__4x4_aarch64_neon_tbl128", 4242)] == (500, 250)
    (tmp_path / simpleperf.SAMPLES_TEXT).write_text((DATA / "simpleperf-report-sample.txt").read_text())
    summary = simpleperf.write_views(tmp_path, "t <script>")
    svg = (tmp_path / simpleperf.FLAME).read_text()
    assert "t &lt;script&gt;" in svg and "<script>" not in svg  # names and titles are escaped
    assert "xnn_run_operator (750000 events, 75.00%)" in svg
    assert summary["samples"] == 4 and summary["hottest"][0]["share"] == 0.5


# ---------------------------------------------------------------- the adb boundary, with a fake phone


@pytest.fixture(scope="module")
def phone(home, exports, tmp_path_factory):
    """A devices.toml with the fake phone; `adb` on PATH is tests/fakeadb.py."""
    exports["fp32"]
    state = tmp_path_factory.mktemp("fake-phone")
    bin_dir = state / "host-bin"
    bin_dir.mkdir()
    (bin_dir / "adb").write_text(f'#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / "fakeadb.py"} "$@"\n')
    (bin_dir / "adb").chmod(0o755)
    remote = state / "data-local-tmp"
    remote.mkdir()
    saved = {k: os.environ.get(k) for k in ("PATH", "FAKE_ADB_STATE")}
    os.environ["PATH"] = f"{bin_dir}:{os.environ['PATH']}"
    os.environ["FAKE_ADB_STATE"] = str(state)
    # The phone's CPU is this machine's: the host's runner (wheel recipe) runs in its shell.
    home.user_devices.write_text(
        f'[device.fakephone]\ntransport = "adb"\nplatform = "{HOST_PLATFORM}"\nserial = "FAKE0001"\n'
        f'remote_dir = "{remote}"\nthreads = [1]\n'
    )
    yield state
    home.user_devices.unlink()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _journal(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "journal").read_text().splitlines()]


def _plan(**kw) -> session.ProfilePlan:
    return session.ProfilePlan(
        model="tiny_seg",
        dtypes=["fp32"],
        targets=["fakephone.sme2-off"],
        counts=False,
        **kw,
        measure=Measure(iterations=3, warmup=1),
    )


@pytest.mark.slow  # a kernel-log runner build and its runs: ~20 s on 2 cores (full tier)
def test_kernel_lines_from_logcat_reach_the_run_log_and_the_kernels_table(home, phone):
    (phone / "journal").unlink(missing_ok=True)
    (r,) = pipeline.profile_and_store(_plan(), home)
    calls = _journal(phone)
    clears = [i for i, c in enumerate(calls) if c[2:] == ["logcat", "-c"]]
    runs = [i for i, c in enumerate(calls) if c[2:3] == ["shell"] and "sme2_runner" in c[3] and "--model" in c[3]]
    reads = [i for i, c in enumerate(calls) if c[2:4] == ["logcat", "-d"]]
    assert len(runs) == 2 and len(clears) == 2 and len(reads) == 2  # the timing and the ETDump run
    for clear, run, read in zip(clears, runs, reads):
        assert clear < run < read  # cleared before, read after
    log = (r.run_dir / "timing.log").read_text()
    assert logcat.SECTION in log and "xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128" in log
    assert "another_app" not in log and not re.search(logcat.PID_MARKER + r"\d", log)  # the marker line is dropped
    kernels = Warehouse.at(home).query("SELECT op_type, microkernel FROM kernels WHERE run_id = ?", [r.record.run_id])
    conv = kernels[kernels.op_type.str.startswith("Convolution")].microkernel.dropna()
    assert conv.str.contains("xnn_f32_igemm_minmax_ukernel_6x8__aarch64_neonfma_ld128").any()
    assert not kernels.microkernel.dropna().str.contains("another_app").any()


def test_simpleperf_run_pulls_the_profile_and_writes_its_views(home, phone):
    (r,) = pipeline.profile_and_store(_plan(simpleperf=True), home)
    folder = r.run_dir / simpleperf.FOLDER
    assert (folder / simpleperf.DATA).read_bytes()[:8] == b"PERFILE2"
    assert (folder / simpleperf.PROTO).read_bytes()[:10] == b"SIMPLEPERF"
    assert "xnn_f32_igemm_minmax_ukernel_6x8" in (folder / simpleperf.FLAME).read_text()
    assert r.record.results["simpleperf"]["samples"] == 4
    record_calls = [c for c in _journal(phone) if c[:2] == ["simpleperf", "record"]]
    assert record_calls and record_calls[-1][record_calls[-1].index("--") + 1 :][:4] == logcat.PID_WRAPPER[:4]
    # The phone's copies are gone; only the runner bundle stays.
    remote = Path(home.user_devices.read_text().split('remote_dir = "')[1].split('"')[0])
    assert not list(remote.glob("simpleperf-*"))


def test_simpleperf_on_a_device_without_it_is_refused_before_any_run(home):
    before = set(home.runs.iterdir()) if home.runs.exists() else set()
    plan = session.ProfilePlan(model="tiny_seg", dtypes=["fp32"], targets=["host.sme2-off"], simpleperf=True)
    with pytest.raises(Sme2Error, match="simpleperf") as info:
        pipeline.profile_and_store(plan, home)
    assert "adb" in info.value.hint
    assert (set(home.runs.iterdir()) if home.runs.exists() else set()) == before


def test_sme2_trace_puts_the_stack_chart_beside_the_operators(home, phone, tmp_path):
    from typer.testing import CliRunner

    from kit.cli.main import app
    from kit.report import perfetto

    (r,) = pipeline.profile_and_store(_plan(simpleperf=True), home)
    out = tmp_path / "trace.json"
    done = CliRunner().invoke(app, ["trace", str(r.run_dir), "-o", str(out), "--home", str(home.path)])
    assert done.exit_code == 0, done.output
    trace = json.loads(out.read_text())
    perfetto.validate(trace)
    names = {(e["pid"], e["name"]) for e in trace["traceEvents"] if e["ph"] == "X"}
    assert (1000, "xnn_run_operator") in names  # the simpleperf process
    assert any(pid == 1 and name.startswith("Convolution") for pid, name in names)  # the ETDump operators


def test_doctor_report_describes_the_phone_and_profiles_it(home, phone, tmp_path):
    from typer.testing import CliRunner

    from kit.cli.main import app

    out = tmp_path / "doctor.json"
    argv = ["doctor", "--report", "--target", "fakephone.sme2-off", "--out", str(out), "--home", str(home.path)]
    done = CliRunner().invoke(app, argv)
    assert done.exit_code == 0, done.output
    assert "review it before sending" in " ".join(done.output.split())  # the console wraps
    info = json.loads(out.read_text())
    dev = info["device"]
    assert dev["conditions"]["model"] == "Fake SME2 Phone" and dev["conditions"]["android"] == "15"
    assert dev["sme2_detected"] is False  # the fake phone's CPU is this x86 machine's
    assert info["profile"]["label_check"] == "passed" and info["profile"]["what_the_time_is"] == "hardware time"
    assert any(op.startswith("Convolution") for op in info["profile"]["operator_types"])
    assert info["toolchain"]["cmake"].startswith("cmake version") and info["packages"]["executorch"] == "1.5.1"
    assert info["executorch_source"]["wheel_commit"] == sourcefetch_commit()


def sourcefetch_commit() -> str:
    from executorch.version import git_version

    return git_version
