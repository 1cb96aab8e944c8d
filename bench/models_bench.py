"""The case-study models at their published (`full`) size on the host: fp32 and int8, 1 and 2
threads. Prints end-to-end medians and category shares (and the data-movement sentence).

    python bench/models_bench.py [--models squeeze_sam,mobile_sam,edgetam_image_encoder] [--iterations 10]

Slow (full-size exports and 1024x1024 inference): run it in the background."""

from __future__ import annotations

import argparse
import warnings

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="squeeze_sam,mobile_sam,edgetam_image_encoder")
    ap.add_argument("--dtypes", default="fp32,int8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--home", default=None)
    a = ap.parse_args()

    from kit import pipeline
    from kit.analysis import datamovement
    from kit.core.home import DataRoot
    from kit.export import batch
    from kit.core.settings import Measure
    from kit.profile import session
    from kit.trace.program import ProgramMap

    root = DataRoot.resolve(a.home)
    models, dtypes = a.models.split(","), a.dtypes.split(",")
    batch.export_many([(m, d, "full") for m in models for d in dtypes], root, workers=2, progress=print)
    rows = []
    for m in models:
        plan = session.ProfilePlan(
            model=m,
            dtypes=dtypes,
            targets=["host.sme2-off"],
            measure=Measure(
                size="full", threads=[int(t) for t in a.threads.split(",")], iterations=a.iterations, warmup=a.warmup
            ),
        )
        for r in pipeline.profile_and_store(plan, root):
            cats = {c.category: c.share_of_execute for c in r.analysis.category_table("blog").itertuples()}
            dm = datamovement.analyze(r.trace.rows, ProgramMap.load(r.run_dir))
            rows.append(
                (
                    r.record.variant,
                    r.record.threads,
                    r.analysis.e2e["median_ms"],
                    r.analysis.e2e["cv_percent"],
                    cats,
                    dm.sentence,
                )
            )
            print(
                f"{r.record.variant:32s} t{r.record.threads}  e2e median {r.analysis.e2e['median_ms']:9.2f} ms (CV {r.analysis.e2e['cv_percent']:.1f}%)  "
                + "  ".join(f"{k} {100 * v:.1f}%" for k, v in cats.items()),
                flush=True,
            )
            print(f"{'':32s}     {dm.sentence}", flush=True)
    print(
        "\n| variant | threads | e2e median ms | Convolution | GEMM | Data Movement | Elementwise | Other |\n|---|---|---|---|---|---|---|---|"
    )
    for variant, t, med, _cv, cats, _ in rows:
        print(
            f"| {variant} | {t} | {med:.1f} | "
            + " | ".join(
                f"{100 * cats.get(c, 0):.1f}%" for c in ("Convolution", "GEMM", "Data Movement", "Elementwise", "Other")
            )
            + " |"
        )


if __name__ == "__main__":
    main()
