"""Export of many (model, dtype, size) jobs at once (`sme2 export --all` / `-j`, the pipeline's
model sweep): what needs no lowering is settled in this process, the rest is lowered in spawned
worker processes that die with this one, and the first error is raised after the other jobs
finish. The scheduling is apart from `exporter.export_variant`, which each worker runs."""

from __future__ import annotations

from pathlib import Path

from kit.core import lifetime
from kit.core.errors import ExportError, Sme2Error
from kit.core.home import DataRoot
from kit.export.artifact import Export, load
from kit.export.exporter import export_variant, reuse
from kit.models import registry


def _export_job(args) -> str:
    model, dtype, size, root_path, backend, models_dir, force, mode, save_graph = args
    import warnings

    warnings.filterwarnings("ignore")

    return str(
        export_variant(
            registry.get(model, models_dir),
            dtype,
            size,
            DataRoot.resolve(root_path),
            backend=backend,
            force=force,
            mode=mode,
            save_graph=save_graph,
        ).folder
    )


def export_many(
    jobs: list[tuple[str, str, str]],
    root: DataRoot,
    workers: int = 2,
    backend: str = "xnnpack",
    models_dir: str | None = None,
    force: bool = False,
    progress=None,
    mode: str = "standard",
    save_graph: bool = False,
) -> dict[tuple[str, str, str], Export]:
    """Export (model, dtype, size) jobs in parallel worker processes. Lowering is single-threaded
    Python, so two workers roughly halve the wall time on two cores. The first error is raised
    after the other jobs finish (their exports are kept)."""
    import concurrent.futures as cf
    import multiprocessing

    # What needs no lowering (current in the data root, or in the export cache) is settled here:
    # a worker process costs seconds (it imports torch) where a restore costs milliseconds.
    reused: dict[tuple[str, str, str], Export] = {}
    if not force:
        for job in jobs:
            try:
                exp = reuse(registry.get(job[0], models_dir), job[1], job[2], root, backend, mode, save_graph)
            except Sme2Error:
                continue  # the export below reports it, after the other jobs, as it always has
            if exp is not None:
                reused[job] = exp
                if progress:
                    progress(f"{job[0]}-{job[1]} ({job[2]}): up to date")
    todo = [job for job in jobs if job not in reused]
    if len(todo) < len(jobs):
        rest = export_many(todo, root, workers, backend, models_dir, force, progress, mode, save_graph) if todo else {}
        return {job: reused.get(job) or rest[job] for job in jobs}

    if workers <= 1 or len(jobs) <= 1:
        out = {}
        for model, dtype, size in jobs:
            out[(model, dtype, size)] = export_variant(
                registry.get(model, models_dir),
                dtype,
                size,
                root,
                backend=backend,
                force=force,
                progress=progress,
                mode=mode,
                save_graph=save_graph,
            )
        return out
    results, errors = {}, []
    import os

    # Workers die with this process (an orphaned export would compete with the next measurement);
    # they are spawned by this thread in submit(), which waits for them below.
    with cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=lifetime.worker_initializer,
        initargs=(os.getpid(),),
    ) as pool:
        futures = {
            pool.submit(_export_job, (m, d, s, str(root.path), backend, models_dir, force, mode, save_graph)): (m, d, s)
            for m, d, s in jobs
        }
        for fut in cf.as_completed(futures):
            job = futures[fut]
            try:
                results[job] = load(Path(fut.result()))
                if progress:
                    progress(f"exported {job[0]}-{job[1]} ({job[2]})")
            except Sme2Error as e:
                errors.append(e)
            except (cf.process.BrokenProcessPool, SystemExit) as e:
                # The worker ended (os._exit, a signal, a native crash) or asked to: no result is a
                # failure, never a silent success.
                how = "ended" if isinstance(e, cf.process.BrokenProcessPool) else f"called sys.exit({e.code!r})"
                errors.append(
                    ExportError(
                        f"the export worker for model {job[0]!r} {how} without a result while exporting "
                        f"{job[0]}-{job[1]} ({job[2]})",
                        f"export it alone to see the model's own error: sme2 export --model {job[0]} "
                        f"--dtype {job[1]} --size {job[2]}",
                    )
                )
    if errors:
        raise errors[0]
    return {job: results[job] for job in jobs}
