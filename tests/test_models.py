"""The case-study packages: parameter counts and output shapes against MODELS.md, every supported
dtype exported at `small`, runs on the host and on the emulated SME2 pair, data movement in the
timeline, int8 compute delegated to XNNPACK."""

import pytest
import torch

from kit import pipeline
from kit.core.settings import Measure
from kit.export import batch, exporter
from kit.models import registry
from kit.profile import session
from models.common import count_parameters

CASE_STUDY = ("squeeze_sam", "mobile_sam", "edgetam_image_encoder")
DTYPES = ("fp32", "fp16", "int8", "int8-dynamic")


def _full(name):
    pkg = registry.get(name)
    return pkg, pkg.spec.build(pkg.spec.size("full"))


def test_squeeze_sam_matches_the_published_configuration():
    _, m = _full("squeeze_sam")
    assert count_parameters(m) == pytest.approx(10.16e6, rel=0.005)
    assert count_parameters(m.transformer) == pytest.approx(1.45e6, rel=0.005)
    enc = count_parameters(m.patch_embed) + count_parameters(m.patch_norm) + count_parameters(m.enc)
    assert enc == pytest.approx(3.77e6, rel=0.005) and count_parameters(m.dec) == pytest.approx(4.21e6, rel=0.005)


def test_mobile_sam_matches_the_published_configuration():
    _, m = _full("mobile_sam")
    assert count_parameters(m.image_encoder) == pytest.approx(5.74e6, rel=0.005)
    assert count_parameters(m.prompt_encoder) == 6_220
    assert count_parameters(m.mask_decoder) == 4_058_340


def test_edgetam_encoder_matches_the_published_configuration():
    _, m = _full("edgetam_image_encoder")
    assert count_parameters(m) == pytest.approx(4.90e6, rel=0.005)
    assert count_parameters(m.trunk) == pytest.approx(4.714e6, rel=0.005) and count_parameters(m.neck) == pytest.approx(
        0.185e6, rel=0.01
    )


@pytest.mark.slow  # full-size forward passes (SqueezeSAM at 1024x1024)
@pytest.mark.casestudy
@pytest.mark.parametrize(
    "name, shapes",
    [
        ("squeeze_sam", [(1, 3, 1024, 1024), (1, 3)]),
        ("mobile_sam", [(1, 3, 256, 256), (1, 3)]),
        (
            "edgetam_image_encoder",
            [
                (1, 256, 256, 256),
                (1, 256, 128, 128),
                (1, 256, 64, 64),
                (1, 256, 64, 64),
                (1, 256, 256, 256),
                (1, 256, 128, 128),
                (1, 256, 64, 64),
            ],
        ),
    ],
)
def test_full_size_output_shapes(name, shapes):
    pkg = registry.get(name)
    m = pkg.spec.build({**pkg.spec.size("full"), "return_pos": True})  # edgetam: with the constant maps
    with torch.no_grad():
        out = m(*pkg.spec.example_inputs(pkg.spec.size("full")))
    assert [tuple(o.shape) for o in out] == shapes


def _supported(name):
    return list(registry.get(name).spec.supported_dtypes)


@pytest.fixture(scope="session")
def model_exports(home, native_runner):
    """Every supported dtype of every case-study model at `small`, two exports at a time."""
    jobs = [(n, d, "small") for n in CASE_STUDY for d in _supported(n)]
    return {(n, d): e for (n, d, _), e in batch.export_many(jobs, home, workers=2).items()}


@pytest.mark.slow  # every supported dtype of the three case-study models: minutes
@pytest.mark.parametrize("name", CASE_STUDY)
def test_every_dtype_exports_and_passes_its_numerical_check(model_exports, name):
    for d in _supported(name):
        meta = model_exports[(name, d)].meta
        assert meta["numerical_check"]["passed"], (name, d, meta["numerical_check"])
        assert meta["delegate_partitions"] >= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", CASE_STUDY)
def test_int8_delegates_quantized_convolutions_and_gemms(model_exports, name):
    for d in [d for d in ("int8", "int8-dynamic") if d in _supported(name)]:
        ops = model_exports[(name, d)].meta["by_operator"]
        compute = {k: v for k, v in ops.items() if k in ("aten_convolution_default", "aten_linear_default")}
        assert compute and all(v["delegated"] > 0 and v["non_delegated"] == 0 for v in compute.values()), (
            name,
            d,
            compute,
        )


@pytest.fixture(scope="session")
def model_runs(home, model_exports, native_runner, qemu_setup):
    """fp32 on the host and on the emulated pair for every model, int8 on the pair for SqueezeSAM
    (one iteration: emulation is slow; the int8 kernel switch is the same for the others)."""
    runs = {}
    for name in CASE_STUDY:
        host = pipeline.profile_and_store(
            session.ProfilePlan(
                model=name,
                dtypes=["fp32"],
                targets=["host.sme2-off"],
                measure=Measure(size="small", iterations=3, warmup=1),
            ),
            home,
        )
        runs[(name, "fp32", "host.sme2-off")] = host[0]
        for r in pipeline.profile_and_store(
            session.ProfilePlan(
                model=name,
                dtypes=["fp32", "int8"] if name == "squeeze_sam" else ["fp32"],
                targets=["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"],
                measure=Measure(iterations=1, warmup=0),
            ),
            home,
        ):
            runs[(name, r.record.dtype, r.record.target)] = r
    return runs


def test_unsupported_dtype_has_a_clear_message(home):
    from kit.core.errors import ModelPackageError

    with pytest.raises(ModelPackageError, match="squeeze_sam.*does not support int8-dynamic: XNNPACK's partitioner"):
        exporter.export_variant(registry.get("squeeze_sam"), "int8-dynamic", "small", home)


@pytest.mark.slow  # and qemu, through model_runs
@pytest.mark.parametrize("name", CASE_STUDY)
def test_runs_on_host_and_emulated_pair_with_sme2_kernels_only_when_on(model_runs, name):
    for dtype, tag in (("fp32", "PF32"), ("int8", "PQS8"))[: 2 if name == "squeeze_sam" else 1]:
        on = model_runs[(name, dtype, "armv9-qemu.sme2-on")].analysis.op_stats
        off = model_runs[(name, dtype, "armv9-qemu.sme2-off")].analysis.op_stats
        gemm_on = on[on.op_type.str.startswith(("Convolution", "Fully Connected"))]
        gemm_off = off[off.op_type.str.startswith(("Convolution", "Fully Connected"))]
        assert gemm_on.op_type.str.contains(tag).any() and not gemm_off.op_type.str.contains(tag).any(), (name, dtype)
    assert model_runs[(name, "fp32", "host.sme2-off")].analysis.e2e["median_ms"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", CASE_STUDY)
def test_data_movement_appears_in_the_timeline(model_runs, name):
    ops = model_runs[(name, "fp32", "host.sme2-off")].trace.operators
    layout = ops[ops.op_type.str.contains("Transpose|permute|Copy|Convert|upsample_nearest|expand_copy", regex=True)]
    assert len(layout) > 0, name
    cats = set(model_runs[(name, "fp32", "host.sme2-off")].analysis.category_table("blog").category)
    assert "Data Movement" in cats


@pytest.mark.slow
def test_squeeze_sam_report_shows_the_kernel_difference_labelled_emulated(model_runs, home):
    from kit.report import builder

    md = builder.build(home, "squeeze_sam-int8").markdown.read_text()
    assert "EMULATED" in md and "xnnpack -> kleidiai-sme2" in md
    assert "| Convolution" in md and "| Data Movement" in md
    assert "transposes" in md  # the data-movement sentence
