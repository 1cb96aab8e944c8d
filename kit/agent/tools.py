"""The tools an assistant calls, as plain functions over one data root: each validates its inputs
(names through kit.core.names, counts through kit.core.limits), calls the same kit functions as
the command line, and returns JSON-ready data. An Sme2Error is what the assistant sees on a
refusal or failure: its message and its hint.

No tool takes a file path, a models folder or a checkpoint: the data root and the model packages
are fixed when the server starts, so a prompt cannot point the platform at other files."""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

import anyio
import pandas as pd

from kit import pipeline
from kit.analysis import compare as compare_mod
from kit.core import limits, names
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.names import Target, Variant
from kit.core.settings import Measure
from kit.devices import inventory
from kit.export import exporter
from kit.models import registry
from kit.profile import runsummary, session
from kit.report import builder
from kit.skills import checks
from kit.skills.contract import Scope
from kit.store.warehouse import Warehouse

MAX_ROWS = 10_000
MAX_ITERATIONS = 1_000  # a tool call should finish within minutes, not hours
MAX_WARMUP = 100
RUN_TIMEOUT_S = limits.RUN_TIMEOUT_S


def _frame(df: pd.DataFrame, limit: int | None = None) -> dict[str, Any]:
    """A DataFrame as {columns, rows, row_count, truncated}, values JSON-native (dates as ISO text)."""
    shown = df if limit is None else df.head(limit)
    split = json.loads(shown.to_json(orient="split", date_format="iso", index=False, default_handler=str))
    return {
        "columns": split["columns"],
        "rows": split["data"],
        "row_count": len(shown),
        "truncated": limit is not None and len(df) > limit,
    }


def _records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-native dicts (NaN becomes null)."""
    return json.loads(df.to_json(orient="records", date_format="iso", default_handler=str))


def _dtypes(model: str, dtypes: list[str]) -> list[str]:
    names.model_name(model)
    if not dtypes:
        raise Sme2Error("no dtype given", f"use one or more of {', '.join(names.DTYPES)}, or ['all']")
    if dtypes != ["all"]:
        for d in dtypes:
            names.dtype(d)
    return registry.dtypes_of(model, ",".join(dtypes))


def _targets(targets: list[str]) -> list[str]:
    if not targets:
        raise Sme2Error("no target given", "e.g. ['host.sme2-off'] or ['armv9-qemu.sme2-on', 'armv9-qemu.sme2-off']")
    return [Target.parse(t).key for t in targets]


def make_tools(root: DataRoot) -> list[Callable]:
    """The tool functions bound to one data root (their names, docstrings and type hints are the
    tool names, descriptions and input schemas the server publishes)."""

    def list_models() -> dict[str, Any]:
        """Model packages: name, kind (native or arm-kit), supported dtypes (and why others are
        refused), named sizes, and any problem that makes a package unusable."""
        return {
            "models": [
                {
                    "name": p.name,
                    "ok": p.ok,
                    "kind": p.kind,
                    "dtypes": list(p.spec.supported_dtypes) if p.spec else [],
                    "unsupported": dict(p.spec.unsupported) if p.spec else {},
                    "sizes": dict(p.spec.sizes) if p.spec else {},
                    "error": p.error,
                }
                for p in registry.discover()
            ]
        }

    def list_devices(detect: bool = False) -> dict[str, Any]:
        """Devices and their targets (<device>.sme2-on / .sme2-off), transport, platform and
        emulation; with detect=true each device is contacted to detect its CPU and SME2."""
        return {"devices": inventory.survey(root, detect=detect)}

    def export_model(model: str = "tiny_seg", dtypes: list[str] = ["fp32"], size: str = "small") -> dict[str, Any]:  # noqa: B006
        """Export model variants to .pte + ETRecord + export_meta.json (with a numerical check);
        reuses an up-to-date export. dtypes: fp32, fp16, int8, int8-dynamic, or ['all']."""
        names.size_name(size)
        pkg = registry.get(model)
        out = []
        for d in _dtypes(model, dtypes):
            e = exporter.export_variant(pkg, d, size, root)
            m = e.meta
            out.append(
                {
                    "variant": m["variant"],
                    "size": m["size"],
                    "pte": str(e.pte.relative_to(root.path)),
                    "pte_sha256": m["pte_sha256"],
                    "delegated_ops": m["delegated_ops"],
                    "non_delegated_op_names": m["non_delegated_op_names"],
                    "numerical_check": m["numerical_check"],
                }
            )
        return {"exports": out}

    def profile(
        model: str = "tiny_seg",
        dtypes: list[str] = ["fp32"],  # noqa: B006
        targets: list[str] = ["host.sme2-off"],  # noqa: B006
        iterations: int = limits.DEFAULT_ITERATIONS,
        warmup: int = limits.DEFAULT_WARMUP,
        threads: list[int] | None = None,
        size: str | None = None,
    ) -> dict[str, Any]:
        """Profile variants on targets (exports and builds what is missing): a timing run and an
        ETDump run per target and thread count, stored in the warehouse. SME2 on/off pairs of one
        device are measured interleaved. size: a named size of the model (default: the device's,
        full on hardware, small emulated). Emulated (armv9-qemu) times are not hardware times.
        Returns each run's summary, the one `sme2 profile --json` prints."""
        if not 1 <= limits.check_iterations(iterations) <= MAX_ITERATIONS:
            raise Sme2Error(f"iterations {iterations} is above {MAX_ITERATIONS}", "profile in several calls")
        if not 0 <= limits.check_iterations(warmup, "warmup", 0) <= MAX_WARMUP:
            raise Sme2Error(f"warmup {warmup} is above {MAX_WARMUP}", f"use at most {MAX_WARMUP}")
        plan = session.ProfilePlan(
            model=model,
            dtypes=_dtypes(model, dtypes),
            targets=_targets(targets),
            measure=Measure.of(
                size=size, threads=threads, iterations=iterations, warmup=warmup, timeout_s=RUN_TIMEOUT_S
            ),
        )
        results = pipeline.profile_and_store(plan, root)
        return {"runs": [runsummary.summarize(r) for r in results]}

    async def sql(query: str, max_rows: int = 200) -> dict[str, Any]:
        """One read-only SELECT over the warehouse (tables runs, latency_samples, op_events,
        op_instances, op_stats, category_stats, kernels, artifacts, regressions, op_counts,
        op_event_counts; view current_runs), stopped after 60 s. It cannot read or write files,
        attach databases, load extensions or change settings."""
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or not 1 <= max_rows <= MAX_ROWS:
            raise Sme2Error(f"max_rows {max_rows!r} is out of range", f"use 1 to {MAX_ROWS}")
        # kit.store.usersql, over a lab store too: at most max_rows + 1 rows leave DuckDB. The query
        # runs in its own thread; a client's cancellation (or its going away) interrupts it.
        query_run = Warehouse.at(root).user_query(query, max_rows=max_rows)
        try:
            df = await anyio.to_thread.run_sync(query_run.result, abandon_on_cancel=True)
        except BaseException:
            # Stopped from a thread of its own: this task is being cancelled and cannot wait.
            query_run.cancel()
            threading.Thread(target=query_run.stop, name="sme2-user-sql-stop", daemon=True).start()
            raise
        return _frame(df, max_rows)

    def compare(model: str = "tiny_seg", dtype: str = "fp32", device: str = "armv9-qemu") -> dict[str, Any]:
        """SME2 on vs off of one variant on one device, from the warehouse: end-to-end medians
        (and speedup with its 95% interval on hardware), categories before and after with their
        kernel families, the bottleneck shift, and the top operators. Emulated: no speedups."""
        names.device_name(device)
        c = compare_mod.compare(Warehouse.at(root), Variant(model, dtype).key, device)
        return {
            "headline": c.headline(),
            "emulated": c.emulated,
            "e2e": c.e2e,
            "runs": {"on": c.b.run_id, "off": c.a.run_id},
            "bottleneck": c.bottleneck,
            "categories": _records(c.categories),
            "operators": _records(c.operators.head(10)),
            "counts": (
                {
                    "execute": c.counts_execute,
                    "categories": _records(c.counts),
                    "what": "estimated cycles from emulated instruction counts, not hardware time",
                }
                if c.counts is not None
                else None
            ),
        }

    def report(model: str = "tiny_seg", dtype: str = "fp32") -> dict[str, Any]:
        """Build the Markdown + HTML report of one variant from the warehouse; returns its paths
        (relative to the data root), the runs it shows and the SME2 headlines."""
        out = builder.build(root, Variant(model, dtype).key)
        return {
            "markdown": str(out.markdown.relative_to(root.path)),
            "html": str(out.html.relative_to(root.path)) if out.html else None,
            "charts": [str(p.relative_to(root.path)) for p in out.pngs],
            "runs": out.run_ids,
            "summary": out.summary_md,
        }

    def check(
        skill: str,
        model: str = "tiny_seg",
        dtypes: list[str] = ["fp32", "int8"],  # noqa: B006
        targets: list[str] | None = None,
    ) -> dict[str, Any]:
        """Verify a skill's outputs (env-setup, export-model, build-runners, run-pipeline,
        summarize-results, smoke-test, regression-check): passed, and the list of problems (kind,
        what, message, hint) when not."""
        problems = checks.run(skill, root, Scope(model=model, dtypes=list(dtypes), targets=targets))
        return {"skill": skill, "passed": not problems, "problems": [p.to_json() for p in problems]}

    return [list_models, list_devices, export_model, profile, sql, compare, report, check]
