"""The regression use case: a known-good run (a small real run folder checked in with its expected
summary, `analysis.json`) against which two things are checked.

1. The tooling: re-analysing the known-good ETDump and timing file must give its expected summary
   (end-to-end median, categories, top operators) to 1e-9: a change in ingestion, statistics or
   categories shows up here before it changes anyone's numbers.
2. The run: the newest run of the same key (variant, target, size, threads) in the warehouse must
   have the same operator mix (operator types, instances per iteration, categories; the kernel
   family is part of the operator name) and, on the same hardware (not emulated, same CPU model),
   an end-to-end median no slower than `max_slowdown` times the known-good one.

The bundled known-good run is tiny_seg fp32 on armv9-qemu.sme2-on (small, 1 thread): QEMU's
`-cpu max` is the same CPU everywhere, so its operator mix is reproducible on any machine; its
times are emulated and never compared. Any run folder can serve as a baseline (`--baseline`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from kit.core.errors import Sme2Error
from kit.core.home import DataRoot
from kit.core.jsonfile import read_json
from kit.profile import session
from kit.profile.runrecord import RUN_FILE, RunRecord
from kit.skills.contract import Problem, Scope, newest_run, op_table
from kit.stats import categories, summary
from kit.store import runs as stored_runs
from kit.store.warehouse import Warehouse

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "skills" / "regression-check" / "assets" / "known-good"
REL_TOL = 1e-9
REFRESH = "if the change is intended, refresh the known-good run (skills/regression-check/SKILL.md, 'Refreshing')"


def differences(expected, got, path: str = "") -> list[tuple[str, object, object]]:
    """(key path, expected, got) for every leaf that differs; floats to REL_TOL, NaN equals NaN."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(expected) | set(got), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in got or k not in expected:
                out.append((sub, expected.get(k, "<absent>"), got.get(k, "<absent>")))
            else:
                out += differences(expected[k], got[k], sub)
        return out
    if isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            return [(f"{path}.length", len(expected), len(got))]
        return [d for i, (a, b) in enumerate(zip(expected, got)) for d in differences(a, b, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(got, numbers) and not isinstance(expected, bool):
        if math.isnan(expected) and math.isnan(got):
            return []
        return [] if math.isclose(expected, got, rel_tol=REL_TOL, abs_tol=1e-12) else [(path, expected, got)]
    return [] if expected == got else [(path, expected, got)]


def _same(want, have) -> bool:
    """Equal as numbers when both read as numbers (a CSV column with empty Arm-kit rows reads as
    floats: 5.0 is the known-good 5), else as text."""
    try:
        return float(want) == float(have)
    except (TypeError, ValueError):
        return str(want) == str(have)


def _plain(value):
    """A numpy scalar as the Python value it holds (messages show 13, not np.int32(13))."""
    return value.item() if hasattr(value, "item") else value


def check(root: DataRoot, scope: Scope) -> list[Problem]:
    base = Path(scope.baseline or DEFAULT_BASELINE)
    try:
        rec = RunRecord.load(base)
    except Sme2Error as e:
        return [Problem("file", str(base / RUN_FILE), f"the known-good run is unreadable: {e.message}", e.hint)]
    expected_path, ops_path = base / "analysis.json", base / f"{rec.stem}_exec_ops_stats.csv"
    missing = [f for f in (expected_path, ops_path, base / "etdump.etdp", base / "timing.json") if not f.exists()]
    if missing:
        return [
            Problem("file", str(f), "the known-good run folder lacks this file", "copy a complete run folder")
            for f in missing
        ]
    return _tooling(base, expected_path) + _against_run(root, scope, rec, base, ops_path, expected_path)


def _tooling(base: Path, expected_path: Path) -> list[Problem]:
    expected = read_json(expected_path, "the known-good run")
    try:
        result = session.load_run(base, categories.load_rules())  # built-in rules: a user file must not count
    except Sme2Error as e:
        return [Problem("file", str(base), f"the known-good run no longer loads: {e.message}", e.hint)]
    got = json.loads(json.dumps(summary.summary_of(result.analysis), default=str))  # the file's types
    return [
        Problem(
            "value",
            f"{base.name}/analysis.json:{key}",
            f"re-analysing the known-good ETDump gives {have!r}, expected {want!r}",
            f"the ingestion, statistics or categories changed their results; {REFRESH}",
        )
        for key, want, have in differences(expected, got)[:20]
    ]


def _against_run(
    root: DataRoot, scope: Scope, rec: RunRecord, base: Path, ops_path: Path, expected_path: Path
) -> list[Problem]:
    wh = Warehouse.at(root)
    key = f"{rec.variant} on {rec.target} ({rec.size}, {rec.threads} thread(s))"
    run = newest_run(wh, rec.variant, rec.target, rec.size, rec.threads)
    if run is None:
        return [
            Problem(
                "run",
                key,
                "no run of the known-good run's key in the warehouse to compare",
                f"sme2 profile --model {rec.model} --dtype {rec.dtype} --target {rec.target} --size {rec.size}"
                f" --threads {rec.threads}",
            )
        ]
    fix = f"compare the runs: sme2 analyze {run.run_dir} and sme2 analyze {base}; {REFRESH}"
    base_ops = op_table(ops_path).set_index("op_type")
    new_ops = stored_runs.operator_rows(wh, run.run_id)
    new_ops = new_ops.set_index("op_type")
    problems = []
    for op in sorted(set(base_ops.index) - set(new_ops.index)):
        problems.append(Problem("value", f"operators:{op}", f"run {run.run_id} no longer runs {op!r}", fix))
    for op in sorted(set(new_ops.index) - set(base_ops.index)):
        problems.append(Problem("value", f"operators:{op}", f"run {run.run_id} runs {op!r}, new since known-good", fix))
    for op in sorted(set(base_ops.index) & set(new_ops.index)):
        for col in ("instances", "category"):
            want, have = _plain(base_ops.at[op, col]), _plain(new_ops.at[op, col])
            if not _same(want, have):
                problems.append(
                    Problem(
                        "value", f"operators:{op}.{col}", f"{col} {have!r} in {run.run_id}, known-good {want!r}", fix
                    )
                )
    same_hardware = (
        not rec.emulated
        and not bool(run.emulated)
        and (rec.conditions.get("cpu_model") or "") == (run.cpu_model or "")
        and rec.conditions.get("cpu_model")
    )
    if same_hardware:
        base_ms = read_json(expected_path, "the known-good run").get("e2e_median_ms")
        ratio = float(run.e2e_median_ms) / float(base_ms) if base_ms else float("nan")
        if not ratio <= scope.max_slowdown:
            problems.append(
                Problem(
                    "value",
                    f"runs[{run.run_id}].e2e_median_ms",
                    f"{run.e2e_median_ms:.3f} ms is {ratio:.2f}x the known-good {base_ms:.3f} ms (allowed {scope.max_slowdown}x)",
                    "sme2 regressions; sme2 compare; look for a changed runner, export or device condition",
                )
            )
    return problems
