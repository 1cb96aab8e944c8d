"""End to end: a new model package landing -> its report, through the Dagster sensor, against the
same work done by direct kit calls (export + profile + store + report), in one run.

    python bench/pipeline_bench.py [--target host.sme2-off] [--home DIR]

The package is a copy of tiny_seg under a new name with one dtype (fp32), so both sides export it
for real: the export cache is turned off for both; both measure the default 20 + 3 iterations. The runner is built once before timing and
shared (it is not part of a model landing). Sensor side: the `model_packages` sensor evaluated on a
real Dagster instance, each run it requests executed in process, then the `analysis` job (SME2
comparison + report) of the new partition. Direct side: kit.export.export_variant,
kit.pipeline.profile_and_store and kit.report.builder.build on a second, fresh data root."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
REPO = Path(__file__).resolve().parent.parent
NAME = "bench_seg"


def make_package(models: Path) -> None:
    dst = models / NAME
    shutil.copytree(REPO / "models" / "tiny_seg", dst, ignore=shutil.ignore_patterns("__pycache__"))
    code = (dst / "model.py").read_text()
    code = code.replace('name="tiny_seg"', f'name="{NAME}"')
    code = re.sub(r"\nMODEL = ModelSpec\(", '\nMODEL = ModelSpec(\n    dtypes=("fp32",),', code, count=1)
    (dst / "model.py").write_text(code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="host.sme2-off")
    ap.add_argument("--home", default=None, help="a data root whose runner is reused (built if missing)")
    a = ap.parse_args()

    import dagster as dg

    from kit import pipeline
    from kit.core.home import DataRoot
    from kit.export import exporter
    from kit.models import registry
    from kit.core.settings import Measure
    from kit.profile import session
    from kit.report import builder
    from kit.runners.build import build_runner

    build_runner(DataRoot.resolve(a.home))  # once, before timing
    runners = DataRoot.resolve(a.home).path / "runners"
    with tempfile.TemporaryDirectory(prefix="sme2-pipeline-bench-") as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        make_package(models)
        os.environ["SME2_EXPORT_CACHE"] = "off"  # both sides export for real
        os.environ["SME2_MODELS"] = str(models)
        roots = {side: DataRoot.resolve(tmp / side) for side in ("sensor", "direct")}
        for root in roots.values():
            shutil.copytree(runners, root.path / "runners")
        variant = f"{NAME}-fp32"

        # Direct calls: the irreducible work.
        root = roots["direct"]
        t0 = time.perf_counter()
        exporter.export_variant(registry.get(NAME, str(models)), "fp32", "small", root)
        t_export = time.perf_counter() - t0
        pipeline.profile_and_store(
            session.ProfilePlan(model=NAME, dtypes=["fp32"], targets=[a.target], models_dir=str(models), measure=Measure(size="small")),
            root,
        )  # fmt: skip
        builder.build(root, variant)
        direct = time.perf_counter() - t0
        print(f"direct calls: export {t_export:.1f} s, export + profile + store + report {direct:.1f} s", flush=True)

        # Through Dagster: the sensor notices the package and requests the runs.
        os.environ["SME2_HOME"] = str(roots["sensor"].path)
        from sme2_assets.definitions import defs
        from sme2_assets.partitions import MODEL, TARGET
        from sme2_assets.resources import Sme2

        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions(TARGET.name, [a.target])
            quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
            t0 = time.perf_counter()
            sensor = defs.resolve_sensor_def("model_packages")
            result = sensor(
                dg.build_sensor_context(instance=instance, resources={"sme2": Sme2(models_dir=str(models))})
            )
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions(MODEL.name, list(request.partition_keys))
            jobs = []
            for request in result.run_requests:
                res = defs.resolve_job_def(request.job_name).execute_in_process(
                    partition_key=request.partition_key, instance=instance, tags=request.tags, run_config=quiet
                )
                jobs.append((request.job_name, res.success))
            res = defs.resolve_job_def("analysis").execute_in_process(
                partition_key=variant, instance=instance, run_config=quiet
            )
            jobs.append(("analysis", res.success))
            through = time.perf_counter() - t0
        assert all(ok for _, ok in jobs), jobs
        report = roots["sensor"].path / "reports" / variant / "report.md"
        assert report.exists(), f"no report at {report}"
        print(f"through the sensor: {len(jobs)} runs ({', '.join(j for j, _ in jobs)}) {through:.1f} s")
        print(
            f"\nnew model -> report: through Dagster {through:.1f} s, direct calls {direct:.1f} s"
            f" -> {through / direct:.2f}x; goal <= 1.5x: {'met' if through / direct <= 1.5 else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
