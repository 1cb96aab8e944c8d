"""The export cache (kit/export/cache.py): exporting with a cold cache vs a warm one, side by side.

    python bench/export_cache_bench.py [--models tiny_seg] [--dtypes all] [--size small] [--jobs 2]
    python bench/export_cache_bench.py --models squeeze_sam,mobile_sam,edgetam_image_encoder  # the CI set

Cold: a fresh data root and an empty cache folder, so every variant is lowered and checked (what a
first CI run on a machine does). Warm: another fresh data root over the cache the cold pass filled
(what every later CI run and test session does). Both through kit.export.batch.export_many, as the
tests call it. Prints both wall times and their ratio."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny_seg")
    ap.add_argument("--dtypes", default="all", help="comma-separated, or all the model supports")
    ap.add_argument("--size", default="small")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()

    from kit.core.home import DataRoot
    from kit.export import batch, cache
    from kit.models import registry
    from kit.runners.build import build_runner

    jobs = []
    for name in a.models.split(","):
        supported = registry.get(name).spec.supported_dtypes
        dtypes = supported if a.dtypes == "all" else [d for d in a.dtypes.split(",") if d in supported]
        jobs += [(name, d, a.size) for d in dtypes]
    with tempfile.TemporaryDirectory(prefix="sme2-cache-bench-") as tmp:
        os.environ[cache.ENV] = str(Path(tmp) / "cache")  # the workers inherit it
        times = {}
        for label in ("cold", "warm"):
            root = DataRoot.resolve(Path(tmp) / label)
            build_runner(root)  # the numerical check's runner: built before timing, in both
            t0 = time.perf_counter()
            batch.export_many(jobs, root, workers=a.jobs)
            times[label] = time.perf_counter() - t0
            print(f"{label}: {len(jobs)} exports in {times[label]:.1f} s", flush=True)
    print(
        f"\n{len(jobs)} exports ({', '.join(sorted({j[0] for j in jobs}))}, {a.size}): cold cache {times['cold']:.1f} s,"
        f" warm cache {times['warm']:.1f} s -> warm is {times['cold'] / times['warm']:.0f}x faster"
    )


if __name__ == "__main__":
    main()
