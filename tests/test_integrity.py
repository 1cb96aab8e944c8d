"""Dagster runs measure what they claim: the views and their checks read the same warehouse rows
(labelled with the user's category rules), metadata is numeric or tabular, local-CPU work is
queued one at a time, SME2 on and off are measured interleaved under Dagster too, a blocking
regression stops the views, the analysis is automated, an empty check never passes, and every
setting is validated and settable from run config. Real instances, real runs of tiny_seg small."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml
from dagster._utils.tags import TagConcurrencyLimitsCounter

from kit.analysis import validation
from kit.core.home import DataRoot
from kit.core.settings import Settings, SettingsError
from kit.profile import session
from kit.store import views
from kit.store.warehouse import Warehouse
from sme2_assets import checks
from sme2_assets.assets import category_breakdown, device_trace, kernel_view, robust_stats, warehouse_rows
from sme2_assets.definitions import defs
from sme2_assets.partitions import MODEL, TARGET
from sme2_assets.resources import Sme2
from tests.modelpkg import slower_tiny_seg
from tests.dagsterctx import sensor_result

REPO = Path(__file__).resolve().parent.parent
PROFILE_ASSETS = [device_trace, warehouse_rows, robust_stats, category_breakdown, kernel_view]
VARIANT = "tiny_seg-fp32"


def shared_root(tmp_path: Path, home: DataRoot, name: str, share_exports: bool = True) -> DataRoot:
    """A fresh data root that reuses the session's runner builds (and exports): only what the test
    is about differs (its category rules, its warehouse, its runs)."""
    root = DataRoot.resolve(tmp_path / name)
    (root.path / "runners").symlink_to(home.runners, target_is_directory=True)
    if share_exports:
        (root.path / "exports").symlink_to(home.exports, target_is_directory=True)
    return root


def materialize(instance, sme2: Sme2, target: str, assets=PROFILE_ASSETS, **kw) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        assets,
        partition_key=dg.MultiPartitionKey({"model": VARIANT, "target": target}),
        instance=instance,
        resources={"sme2": sme2},
        **kw,
    )


def check_evaluations(instance, run_id: str, name: str) -> list:
    out = []
    for r in instance.get_records_for_run(run_id=run_id, limit=10_000).records:
        ev = r.event_log_entry.dagster_event
        if ev and ev.event_type_value == "ASSET_CHECK_EVALUATION" and ev.event_specific_data.check_name == name:
            out.append(ev.event_specific_data)
    return out


def latest(instance, asset: str):
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    return event.asset_materialization if event else None


def rows_of(table_value: dg.TableMetadataValue) -> list[dict]:
    return [dict(r.data) for r in table_value.records]


# ---- 8. settings


def test_settings_are_validated_and_the_resource_mirrors_them(tmp_path):
    for bad, field in (
        (dict(iterations=0), "iterations"),
        (dict(warmup=-1), "warmup"),
        (dict(threads=[0, 4]), "threads"),
        (dict(threads=[2048]), "threads"),
        (dict(timeout_s=0), "timeout_s"),
        (dict(targets=["host"]), "targets"),
        (dict(runner="fast"), "runner"),
        (dict(regression_block_ratio=0.9), "regression_block_ratio"),
        (dict(categories_file=str(tmp_path / "missing.toml")), "categories_file"),
        (dict(iterationz=5), "iterationz"),
    ):
        with pytest.raises(SettingsError) as e:
            Settings.of(**bad)
        assert f"{field}:" in e.value.message, e.value.message
    ok = Settings.of(iterations=5, threads=[1, 2], targets=["host.sme2-off"], size="small", home="", models_dir="")
    assert ok.home is None and ok.threads == [1, 2]
    # One field per setting, the same defaults, validated when built from run config.
    assert set(Sme2.model_fields) == set(Settings.model_fields)
    assert Sme2().settings() == Settings()
    with pytest.raises(SettingsError, match="timeout_s"):
        Sme2(timeout_s=-1).settings()


# ---- 7. an empty check never passes


def test_a_check_with_nothing_to_check_fails_with_warn():
    for spec in (checks.STATS_COMPLETE, checks.NO_REGRESSION, checks.CATEGORIES_PARTITION, checks.ETDUMP_VALID):
        r = checks.result(spec, [])
        assert r.passed is False and r.severity == dg.AssetCheckSeverity.WARN
        assert r.metadata["detail"].value == "nothing to check"
    passed = checks.result(checks.STATS_COMPLETE, [validation.Gate(True, "fine")])
    assert passed.passed and passed.metadata["gates"].value == 1


# ---- 3. local-CPU work is queued one at a time


def test_exports_and_builds_hold_the_local_cpu_in_the_queue(tmp_path, home, monkeypatch):
    monkeypatch.delenv("SME2_MODELS", raising=False)  # the resource says where the packages are
    models = tmp_path / "models"
    shutil.copytree(REPO / "models" / "tiny_seg", models / "tiny_seg", ignore=shutil.ignore_patterns("__pycache__"))
    sme2 = Sme2(home=str(home.path), models_dir=str(models))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TARGET.name, ["host.sme2-off", "armv9-qemu.sme2-on"])
        result = sensor_result(defs.resolve_sensor_def("model_packages"), instance=instance, resources={"sme2": sme2})
        prepare = [r for r in result.run_requests if r.job_name == "prepare_models"]
        profile = [r for r in result.run_requests if r.job_name == "profile"]
        assert len(prepare) == 4 and len(profile) == 8
        assert all(r.tags.get("sme2/cpu") == "local" for r in prepare + profile)
        builds = sensor_result(
            defs.resolve_sensor_def("devices"), instance=instance, resources={"sme2": Sme2(home=str(home.path))}
        ).run_requests
        assert builds and all(r.tags.get("sme2/cpu") == "local" for r in builds)
    # The instance's queue (sme2_assets/dagster.yaml) lets one sme2/cpu=local run at a time.
    config = yaml.safe_load((REPO / "sme2_assets" / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=config) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    cpu = [lim for lim in limits if lim["key"] == "sme2/cpu"]
    assert cpu and cpu[0]["limit"] == 1
    running_export = SimpleNamespace(tags=prepare[0].tags)
    counter = TagConcurrencyLimitsCounter(limits, [running_export])
    assert counter.is_blocked(SimpleNamespace(tags=profile[0].tags))  # no measurement beside an export
    assert counter.is_blocked(SimpleNamespace(tags=builds[0].tags))
    assert not counter.is_blocked(SimpleNamespace(tags={"sme2/device": "phone", "sme2/cpu": "phone"}))


# ---- 1, 2, 6. views from the warehouse with the user's rules; numeric metadata; automation

USER_RULES = """
[[rule]]
match = "transpose"
blog = "Elementwise"
fine = "LAYOUT"
"""


@pytest.fixture(scope="module")
def user_rules_run(tmp_path_factory, home, native_runner):
    """The profile graph of tiny_seg fp32 small on the host, on a data root whose categories.toml
    moves transposes from Data Movement to Elementwise (fine scheme: LAYOUT); the automation sensor
    evaluated before and after."""
    root = shared_root(tmp_path_factory.mktemp("rules"), home, "home")
    root.user_categories.write_text(USER_RULES)
    sme2 = Sme2(home=str(root.path), size="small", iterations=12, warmup=1, cv_bound_percent=1000.0)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(MODEL.name, [VARIANT])
        instance.add_dynamic_partitions(TARGET.name, ["host.sme2-off"])
        before = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        result = materialize(instance, sme2, "host.sme2-off")
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=before.cursor)
        yield SimpleNamespace(root=root, instance=instance, result=result, before=before, after=after)


@pytest.mark.slow
def test_views_and_their_checks_show_the_users_categories(user_rules_run):
    run = user_rules_run
    assert run.result.success
    wh = Warehouse.at(run.root)
    (run_id,) = run.result.output_for_node("warehouse_rows")["run_ids"]
    ev = views.iteration_category_sums(wh, [run_id])
    transposes = wh.query(
        "SELECT DISTINCT category, fine_category FROM op_events WHERE run_id = ? AND op_type ILIKE 'transpose%'",
        [run_id],
    )
    assert (
        not transposes.empty
        and set(transposes.category) == {"Elementwise"}
        and set(transposes.fine_category) == {"LAYOUT"}
    )
    stored = views.category_stats(wh, [run_id])
    # The breakdown shown is the warehouse's (the user's rules), row for row.
    mat = latest(run.instance, "category_breakdown")
    shown = {(r["category"], round(r["median_ms"], 4)) for r in rows_of(mat.metadata["categories"])}
    assert shown == {(r.category, round(r.median_ms, 4)) for r in stored[stored.scheme == "blog"].itertuples()}
    fine = {r["category"]: r["median_ms"] for r in rows_of(mat.metadata["fine_categories"])}
    assert "LAYOUT" in fine
    # ...and the check validated that same breakdown.
    (evaluation,) = check_evaluations(run.instance, run.result.run_id, "categories_partition")
    assert evaluation.passed
    (gate,) = evaluation.metadata["gate_metadata"].value
    checked = gate["category_medians_ms"]
    assert set(checked["fine"]) == set(fine) and set(checked["blog"]) == {r[0] for r in shown}
    assert checked["fine"]["LAYOUT"] == pytest.approx(fine["LAYOUT"], abs=1e-4)
    assert set(ev[ev.scheme == "fine"].category) == set(fine)
    # The same gate fails for a breakdown made with other rules (the package's defaults).
    default_breakdown = session.load_run(
        Path(wh.query("SELECT run_dir FROM runs WHERE run_id = ?", [run_id]).run_dir[0])
    ).analysis.category_stats
    other = validation.categories(ev, views.iteration_operator_totals(wh, [run_id]), default_breakdown)
    assert not other.passed and "shown totals differ" in other.message
    # stats_complete is computed from the stored operator rows and the run's iterations.
    (stats_eval,) = check_evaluations(run.instance, run.result.run_id, "stats_complete")
    (stats_gate,) = stats_eval.metadata["gate_metadata"].value
    assert stats_eval.passed and stats_gate["iterations"] == 12 and stats_gate["incomplete"] == 0


@pytest.mark.slow
def test_metadata_people_compare_over_time_is_numeric_and_tables_are_tables(user_rules_run):
    inst = user_rules_run.instance
    trace = latest(inst, "device_trace").metadata
    assert isinstance(trace["runs"], dg.TableMetadataValue)
    assert isinstance(trace["e2e_median_ms"], dg.FloatMetadataValue) and trace["e2e_median_ms"].value > 0
    stats = latest(inst, "robust_stats").metadata
    for key in ("e2e_median_ms", "e2e_cv_percent"):
        assert isinstance(stats[key], dg.FloatMetadataValue), key
    # One key per metric: one thread count measured, so no `_t1` twin of each.
    assert "e2e_median_ms_t1" not in stats
    assert stats["e2e_median_ms"].value == round(stats["e2e_median_ms"].value, 4)
    assert isinstance(stats["end_to_end"], dg.TableMetadataValue) and isinstance(
        stats["top_operators"], dg.TableMetadataValue
    )
    cats = latest(inst, "category_breakdown").metadata
    assert isinstance(cats["share_data_movement"], dg.FloatMetadataValue)
    assert isinstance(cats["share_elementwise"], dg.FloatMetadataValue) and 0 < cats["share_elementwise"].value < 1
    assert isinstance(cats["categories"], dg.TableMetadataValue)
    kern = latest(inst, "kernel_view").metadata
    assert isinstance(kern["kernels"], dg.TableMetadataValue)
    for asset in ("device_trace", "robust_stats", "category_breakdown", "kernel_view"):
        md = [
            k
            for k, v in latest(inst, asset).metadata.items()
            if isinstance(v, dg.MarkdownMetadataValue) and k != "chart"
        ]
        assert not md, (asset, md)


@pytest.mark.slow
def test_the_automation_sensor_requests_the_analysis_after_profiling(user_rules_run):
    sensor = defs.resolve_sensor_def("analysis_automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    targeted = sensor.asset_selection.resolve(defs.resolve_asset_graph())
    assert targeted == {dg.AssetKey("sme2_comparison"), dg.AssetKey("report")}
    before, after = user_rules_run.before, user_rules_run.after
    assert before.total_requested == 0  # nothing profiled yet: the views are missing
    comparison = after.get_requested_partitions(dg.AssetKey("sme2_comparison"))
    assert comparison == {VARIANT}, comparison
    assert after.get_requested_partitions(dg.AssetKey("report")) == {VARIANT}


# ---- 5. a large confirmed slowdown blocks the views


@pytest.mark.slow
def test_a_blocking_regression_stops_the_views(tmp_path, home, native_runner, monkeypatch):
    monkeypatch.delenv("SME2_MODELS", raising=False)
    root = shared_root(tmp_path, home, "home", share_exports=False)  # the slower export stays here
    base = dict(home=str(root.path), size="small", iterations=20, warmup=2)
    # Ordinary nights never block (this machine is noisy); the slow night (~9x the convolution
    # FLOPs) is judged against a 2x bar it clears by a wide margin.
    ordinary, strict = dict(regression_block_ratio=1000.0), dict(regression_block_ratio=2.0)
    spec = next(s for s in defs.resolve_assets_def("warehouse_rows").check_specs if s.name == "no_regression")
    assert spec.blocking
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(MODEL.name, [VARIANT])
        instance.add_dynamic_partitions(TARGET.name, ["host.sme2-off"])
        for _ in range(2):  # two ordinary nights
            assert materialize(instance, Sme2(**base, **ordinary), "host.sme2-off").success
        views_before = instance.get_latest_materialization_event(dg.AssetKey("robust_stats")).run_id
        # tiny_seg edited in place (the models folder is $SME2_MODELS): the same run key, a heavier program.
        monkeypatch.setenv("SME2_MODELS", str(slower_tiny_seg(tmp_path / "models")))
        slow = Sme2(**base, **strict)
        result = materialize(instance, slow, "host.sme2-off", raise_on_error=False)
        assert not result.success
        (evaluation,) = check_evaluations(instance, result.run_id, "no_regression")
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        assert evaluation.blocking
        # The rows are stored (the check reads them), the views downstream were not made.
        assert instance.get_latest_materialization_event(dg.AssetKey("warehouse_rows")).run_id == result.run_id
        for asset in ("robust_stats", "category_breakdown", "kernel_view"):
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)).run_id == views_before, asset


# ---- 4. SME2 on and off measured interleaved under Dagster


@pytest.mark.slow
def test_sme2_on_and_off_partitions_are_measured_interleaved_in_one_session(tmp_path, home, qemu_setup):
    root = shared_root(tmp_path, home, "home")
    pair = ["armv9-qemu.sme2-on", "armv9-qemu.sme2-off"]
    run_config = {
        "resources": {
            "sme2": {
                "config": {"home": str(root.path), "threads": [1, 2], "iterations": 3, "warmup": 1, "timeout_s": 600}
            }
        }
    }
    job = defs.resolve_job_def("profile")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(MODEL.name, [VARIANT])
        instance.add_dynamic_partitions(TARGET.name, pair)
        first = job.execute_in_process(
            partition_key=dg.MultiPartitionKey({"model": VARIANT, "target": pair[0]}),
            instance=instance,
            run_config=run_config,
        )
        assert first.success
        folders_after_first = sorted(p.name for p in root.runs.iterdir())
        second = job.execute_in_process(
            partition_key=dg.MultiPartitionKey({"model": VARIANT, "target": pair[1]}),
            instance=instance,
            run_config=run_config,
        )
        assert second.success
        on_meta = first.asset_materializations_for_node("device_trace")[0].metadata
        off_meta = second.asset_materializations_for_node("device_trace")[0].metadata
    # The second partition measured nothing: it adopted the runs of the first one's pair session.
    assert sorted(p.name for p in root.runs.iterdir()) == folders_after_first and len(folders_after_first) == 4
    assert not on_meta["adopted"].value and off_meta["adopted"].value
    assert "adopted from pair session" in off_meta["measurement"].value
    assert on_meta["pair_session"].value == off_meta["pair_session"].value != ""
    records = [json.loads((root.runs / name / "run.json").read_text()) for name in folders_after_first]
    assert {r["conditions"]["pair_session"] for r in records} == {on_meta["pair_session"].value}
    assert all(r["iterations"] == 3 and r["warmup"] == 1 for r in records)  # from run config
    records.sort(key=lambda r: r["conditions"]["measurement_window"][0])
    assert [(r["sme2"], r["threads"]) for r in records] == [(True, 1), (False, 1), (True, 2), (False, 2)]
    windows = [r["conditions"]["measurement_window"] for r in records]
    assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:]))  # one after another, never overlapping
    # Both partitions' rows are in the warehouse, each once.
    stored = Warehouse.at(root).query("SELECT target, count(*) n FROM runs GROUP BY target")
    assert dict(zip(stored.target, stored.n)) == {pair[0]: 2, pair[1]: 2}
