"""Analysis and reports on real traces: SME2 comparison, data movement, kernel view, regression
detection (a real injected slowdown is found; pure noise is not, at the stated rate), Perfetto
export, the HTML report in headless Chromium, Arm-kit import and HUD export."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.browser import CHROMIUM, chromium

from kit.analysis import compare, datamovement, regress, validation
from kit.core.home import DataRoot
from kit.profile import session
from kit.report import armkit, builder, hud, perfetto
from kit.store import ingest
from kit.store.warehouse import Warehouse
from kit.trace import kernels
from kit.trace.program import ProgramMap
from tests.modelpkg import slower_tiny_seg
from tests.runfolder import later_night as clone_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wh_home(tmp_path_factory, qemu_runs, host_run):
    """A warehouse with the emulated pair (fp32, int8) and a host run."""
    root = DataRoot.resolve(tmp_path_factory.mktemp("reports"))
    for r in [host_run, *qemu_runs.values()]:
        ingest.ingest_run(root, clone_run(r.run_dir, root, "r"))
    return root


def test_emulated_comparison_shows_counts_kernels_and_no_speedups(wh_home):
    c = compare.compare(Warehouse.at(wh_home), "tiny_seg-int8", "armv9-qemu")
    assert c.emulated and "speedup" not in c.e2e and "speedup" not in c.categories
    table = compare.blog_table(c)
    assert list(table.category) == ["Convolution", "GEMM", "Data Movement", "Elementwise", "Other"]
    conv = table[table.category == "Convolution"].iloc[0]
    assert conv["kernels off -> on"] == "xnnpack -> kleidiai-sme2" and "emulated ms on" in table
    assert "EMULATED" in c.headline()


def test_hardware_comparison_has_speedups_with_an_interval(recorded_run, tmp_path):
    """A real host run filed twice as an SME2 pair of a hardware device (the arithmetic is what is tested)."""
    root = DataRoot.resolve(tmp_path / "hw")
    for sme2 in (True, False):
        d = clone_run(recorded_run.run_dir, root, f"hw{sme2}")
        rec = json.loads((d / "run.json").read_text())
        rec.update(
            target=f"board.sme2-{'on' if sme2 else 'off'}", device="board", sme2=sme2, emulated=False, run_key=None
        )
        (d / "run.json").write_text(json.dumps(rec))
        ingest.ingest_run(root, d)
    c = compare.compare(Warehouse.at(root), "tiny_seg-fp32", "board")
    assert not c.emulated and c.e2e["ci_low"] <= c.e2e["speedup"] <= c.e2e["ci_high"]
    assert c.e2e["speedup"] == pytest.approx(1.0, abs=0.01)  # the same samples on both sides
    assert "speedup" in compare.blog_table(c)


def test_speedup_interval_covers_a_known_ratio():
    rng = np.random.default_rng(3)
    off, on = rng.lognormal(np.log(10), 0.05, 200), rng.lognormal(np.log(4), 0.05, 200)
    point, lo, hi = compare.speedup_ci(off, on)
    assert lo < 2.5 < hi and point == pytest.approx(2.5, rel=0.02)


def test_data_movement_names_transposes_and_their_modules(recorded_run):
    dm = datamovement.analyze(recorded_run.trace.rows, ProgramMap.load(recorded_run.run_dir))
    assert dm.transposes["count"] >= 10 and dm.transposes["ms"] > 0
    assert dm.sentence.startswith(f"{dm.transposes['count']} transposes, ") and "% of runtime" in dm.sentence
    modules = set(dm.hotspots.module)
    assert any("GroupNorm" in m or "LayerNorm" in m for m in modules), modules  # graph breaks blamed on the norms
    boundary = dm.positions[dm.positions.next_to_portable != ""]
    assert len(boundary) > 0 and set(boundary.position) <= {
        "delegate entry",
        "delegate exit",
        "portable operator",
        "sole op of its delegate",
    }
    h = dm.health
    ops = recorded_run.trace.operators
    assert h["delegated_ops"] + h["portable_ops"] == len(ops[ops.iteration == 0])
    assert h["delegate_partitions"] == 6 and "aten::native_group_norm.out" in h["portable_kernels"]


def test_data_movement_diff_between_fp32_and_int8(qemu_runs, exports):
    a = datamovement.analyze(qemu_runs[("fp32", True)].trace.rows, exports["fp32"].program_map)
    b = datamovement.analyze(qemu_runs[("int8", True)].trace.rows, exports["int8"].program_map)
    d = datamovement.diff(a, b)
    assert b.health["quant_ms"] > 0 and a.health["quant_ms"] == 0  # Convert ops appear with int8
    assert d["delegate_partitions"][0] == d["delegate_partitions"][1]


LOG_ON = """I 00:00:01.2 xnnpack: Using gemm microkernel 'xnn_pf32_gemm_minmax_ukernel_32x32__neonsme2'
I 00:00:01.3 xnnpack: Using igemm microkernel 'xnn_pqs8_qc8w_igemm_minmax_fp32_ukernel_32x32c4__neonsme2'
I 00:00:01.4 xnnpack: Using transpose microkernel 'xnn_x32_transposec_ukernel__4x4_aarch64_neon_tbl128'"""
LOG_OFF = """Using gemm microkernel 'xnn_f32_gemm_minmax_ukernel_6x8__aarch64_neonfma_lane_ld128'
Using igemm microkernel 'xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_4x16c4__neondot'
Using transpose microkernel 'xnn_x32_transposec_ukernel__4x4_aarch64_neon_tbl128'
Using dwconv microkernel 'xnn_f32_dwconv_minmax_ukernel_25p8c__avx512f'"""


def test_kernel_log_parser_and_isa():
    on = kernels.parse_kernel_log(LOG_ON)
    assert dict(zip(on.kind, on.isa)) == {"gemm": "sme2", "igemm": "sme2", "transpose": "neon"}
    assert kernels.isa_of("xnn_f32_gemm_ukernel_4x8__avx2_broadcast") == "avx2"
    assert kernels.isa_of("xnn_f32_gemm_ukernel_1x16__avx512f_broadcast") == "avx512"
    assert kernels.isa_of("xnn_f16_gemm_ukernel_1x32__neonsme") == "sme"
    side = kernels.side_by_side(LOG_ON, LOG_OFF).set_index("kind")
    assert side.loc["gemm", "isa_on"] == "sme2" and side.loc["gemm", "isa_off"] == "neon"
    assert side.loc["dwconv", "isa_on"] == "-"


def test_sme2_kernel_gate_flags_a_run_without_sme2_kernels(qemu_runs):
    on, off = qemu_runs[("int8", True)].analysis.op_stats, qemu_runs[("int8", False)].analysis.op_stats
    assert validation.sme2_kernels(on, True, "int8").passed
    assert validation.sme2_kernels(off, False, "int8").passed
    bad = validation.sme2_kernels(off, True, "int8")  # an "SME2-on" run that used plain kernels
    assert not bad.passed and "not SME2 kernels" in bad.message


# ---- regression detection


def _noise_trial(pool: np.ndarray, rng, n_base: int = 3, n: int = 30) -> bool:
    base = {None: rng.choice(pool, n_base * n)}
    new = {None: rng.choice(pool, n)}
    return any(t.significant for t in regress.compare(new, base))


def test_detector_false_positive_rate_on_pure_noise(host_run):
    """Baseline and new runs drawn from the same real samples: alarms at most at the stated rate."""
    pool = np.array(json.loads((host_run.run_dir / "timing.json").read_text())["latencies_ms"])
    rng = np.random.default_rng(11)
    trials = 400
    rate = sum(_noise_trial(pool, rng) for _ in range(trials)) / trials
    assert rate <= regress.ALPHA + 0.02, rate


def test_detector_per_operator_fdr_on_noise(host_run):
    ops = host_run.trace.operators
    per_iter = ops.groupby(["op_type", "iteration"]).duration_ms.sum().unstack()
    rng = np.random.default_rng(5)
    false = 0
    trials = 100
    for _ in range(trials):
        new = {op: rng.choice(v.to_numpy(), 30) for op, v in per_iter.iterrows()}
        base = {op: rng.choice(v.to_numpy(), 90) for op, v in per_iter.iterrows()}
        false += any(t.significant for t in regress.compare(new, base))
    assert false / trials <= regress.ALPHA + 0.05


@pytest.mark.slow
def test_detector_finds_a_real_injected_slowdown(home, tiny, native_runner, host, tmp_path, monkeypatch):
    """Real runs of one key: three nights of tiny_seg, then one of the same key whose program does
    real extra work (the package three times wider: ~9x the convolution FLOPs). The slowdown is
    in the program, not in CPU contention, so its detection does not depend on the machine's load."""
    from kit.export import exporter as kit_export
    from kit.models import registry

    root = DataRoot.resolve(tmp_path / "slow")
    exp = kit_export.export_variant(tiny, "fp32", "small", home)
    # The package edited in place: the wider tiny_seg is in the models folder ($SME2_MODELS), so its
    # runs keep tiny_seg's key (a package from another folder would get its own, by design).
    monkeypatch.setenv("SME2_MODELS", str(slower_tiny_seg(tmp_path / "models")))
    wider = registry.get("tiny_seg")
    assert wider.source_id == ""
    wider_exp = kit_export.export_variant(wider, "fp32", "small", DataRoot.resolve(tmp_path / "wider"))
    monkeypatch.delenv("SME2_MODELS")
    nights = [
        session.run_session(root, exp, host, session.Measurement(1, 20, 2, binary=native_runner)) for _ in range(3)
    ]
    for night in nights:
        ingest.ingest_run(root, night.run_dir)
    slow = session.run_session(root, wider_exp, host, session.Measurement(1, 20, 2, binary=native_runner))
    assert slow.record.run_key == nights[0].record.run_key  # the same key, a heavier program
    ingest.ingest_run(root, slow.run_dir)
    wh = Warehouse.at(root)
    f = regress.check_run(wh, slow.record.run_id, block_ratio=1.3)
    e2e = next(t for t in f.tests if t.scope == "e2e")
    assert e2e.significant and e2e.change > 0, f.message
    assert not f.passed and f.blocking, f.message
    slower = {t.op_type for t in f.tests if t.scope == "op" and t.significant and t.change > 0}
    assert any(op.startswith("Convolution") for op in slower), f.message  # where the extra work is
    stored = wh.query("SELECT count(*) n FROM regressions WHERE run_id = ? AND significant", [slow.record.run_id]).n[0]
    assert stored >= 1
    regress.check_run(wh, slow.record.run_id)  # re-checking replaces rows, never duplicates
    assert (
        wh.query("SELECT count(*) n FROM regressions WHERE run_id = ? AND scope = 'e2e'", [slow.record.run_id]).n[0]
        == 1
    )


def test_emulated_regression_check_compares_kernels_not_time(wh_home, qemu_runs):
    root = wh_home
    src = qemu_runs[("fp32", True)].run_dir
    later = clone_run(src, root, "later", "2099-01-01T00:00:00Z")
    ingest.ingest_run(root, later)
    f = regress.check_run(Warehouse.at(root), later.name)
    assert f.passed and "never time" in f.message and not f.tests


# ---- trace export, report, interoperability


def test_perfetto_trace_is_valid_nested_and_round_trips(qemu_runs, tmp_path):
    a, b = qemu_runs[("fp32", True)], qemu_runs[("fp32", False)]
    path = perfetto.export([("on", a.trace.rows), ("off", b.trace.rows)], tmp_path / "ab.json")
    data = json.loads(path.read_text())
    perfetto.validate(data)
    assert json.loads(json.dumps(data)) == data
    xs = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in xs} == {1, 2}
    calls = [e for e in xs if e["name"].startswith("DELEGATE_CALL")]
    for op in (e for e in xs if e["cat"] == "delegated op"):
        call = next(
            c
            for c in calls
            if c["pid"] == op["pid"] and c["tid"] == op["tid"] and c["args"]["instruction"] == op["args"]["instruction"]
        )
        assert call["ts"] <= op["ts"] and op["ts"] + op["dur"] <= call["ts"] + call["dur"] + 1e-6
    with pytest.raises(ValueError, match="missing"):
        perfetto.validate({"traceEvents": [{"ph": "X", "name": "x", "ts": 0, "pid": 1, "tid": 1}]})


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it)")
def test_html_report_renders_offline_in_headlesschromium(wh_home, tmp_path):
    rep = builder.build(wh_home, "tiny_seg-int8")
    md = rep.markdown.read_text()
    assert "EMULATED" in md and "kleidiai-sme2" in md and "| Convolution" in md
    side_by_side = md.split("### Dtypes side by side", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    assert "INT8 share on" in side_by_side and "FP32 share on" in side_by_side
    dom = chromium("--dump-dom", url=rep.html).stdout
    assert dom.count("<svg") >= 6 and 'class="err"' not in dom  # every chart rendered by the inlined Vega
    shot = tmp_path / "report.png"
    chromium("--window-size=1200,2400", f"--screenshot={shot}", url=rep.html)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.std() > 20 and (img < 200).mean() > 0.02  # not blank: text, tables and charts drawn
    for p in rep.pngs:
        assert p.stat().st_size > 5000


def test_the_pages_vega_bundle_is_made_once_per_machine_and_a_damaged_copy_again(tmp_path, monkeypatch):
    import vl_convert as vlc

    from kit.report import render

    monkeypatch.setenv("SME2_BUILD_CACHE", str(tmp_path))
    render.vega_bundle.cache_clear()
    try:
        made = render.vega_bundle()
        kept = tmp_path / "vega" / f"vl-convert-{vlc.__version__}.json"
        assert "vegaEmbed" in made and json.loads(kept.read_text())["bundle"] == made
        page = render.html_document("# x", [])
        assert f"<script>{made}</script>" in page
        render.vega_bundle.cache_clear()
        assert render.vega_bundle() == made  # read back
        for damaged in (
            kept.read_text()[:1000],  # cut short
            json.dumps({"sha256": json.loads(kept.read_text())["sha256"], "bundle": "alert(1)"}),  # edited
        ):
            kept.write_text(damaged)
            render.vega_bundle.cache_clear()
            assert render.vega_bundle() == made and json.loads(kept.read_text())["bundle"] == made
    finally:
        render.vega_bundle.cache_clear()


def test_import_arm_kit_folder(tmp_path, recorded_run):
    kit_dir = tmp_path / "out_tiny_seg" / "runs" / "mac"
    exp_dir = kit_dir / "sme2_off"
    exp_dir.mkdir(parents=True)
    stem = "tiny_seg_xnnpack_fp32_sme2_off_t1"
    shutil.copy(recorded_run.run_dir / "etdump.etdp", exp_dir / f"{stem}.etdump")
    lat = json.loads((recorded_run.run_dir / "timing.json").read_text())["latencies_ms"]
    (exp_dir / f"{stem}_exec_all_runs_timeline_robust_stats.json").write_text(
        json.dumps({"latencies_ms": lat, "median_ms": float(np.median(lat))})
    )
    (kit_dir / "manifest.json").write_text(json.dumps({"device": "Mac M4", "platform": "macos-arm64"}))
    root = DataRoot.resolve(tmp_path / "home")
    ids = armkit.import_folder(root, kit_dir, warmup=recorded_run.record.warmup)
    assert armkit.import_folder(root, kit_dir, warmup=recorded_run.record.warmup) == ids  # re-import adds nothing
    wh = Warehouse.at(root)
    runs = wh.query("SELECT * FROM runs")
    assert (
        len(runs) == 1
        and runs.source[0] == "arm-kit"
        and runs.target[0] == "mac-m4.sme2-off"
        and runs.model[0] == "tiny_seg"
    )
    assert runs.e2e_median_ms[0] == pytest.approx(float(np.median(lat)))
    assert wh.query("SELECT count(*) n FROM op_events").n[0] == len(recorded_run.trace.operators)


def test_export_hud_records(wh_home):
    recs = hud.records(Warehouse.at(wh_home), "tiny_seg-int8")
    assert recs and all({"benchmark", "model", "metric", "runners"} <= set(r) for r in recs)
    med = [r for r in recs if r["metric"]["name"] == "median_latency(ms)"]
    assert {r["runners"][0]["extra_info"]["target"] for r in med} == {"armv9-qemu.sme2-on", "armv9-qemu.sme2-off"}
    assert all(isinstance(v, float) for r in med for v in r["metric"]["benchmark_values"])
    assert {r["model"]["backend"] for r in med} == {"xnnpack", "xnnpack+sme2"}
