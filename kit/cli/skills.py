"""`sme2 check <skill>`: the verification step of each agent skill (skills/<name>/SKILL.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from kit.cli.common import HomeOpt, command, csv_list, emit_json, err, root_of
from kit.skills import checks
from kit.skills.contract import DEFAULT_MODEL, Scope

app = typer.Typer()


@app.command("check")
@command
def check_cmd(
    skill: str = typer.Argument(..., help="One of: " + ", ".join(checks.SKILLS) + "."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model package the skill worked on."),
    dtype: str = typer.Option("fp32,int8", "--dtype", "-d", help="Comma-separated dtypes."),
    target: Optional[str] = typer.Option(
        None, "--target", "-t", help="Comma-separated targets (default: the ones sme2 pipeline measures here)."
    ),
    size: str = typer.Option("small", "--size", "-s", help="export-model: the export size to look for."),
    emulator: bool = typer.Option(
        True, "--emulator/--no-emulator", help="env-setup: require the emulated SME2 pair (sme2 setup)."
    ),
    baseline: Optional[Path] = typer.Option(
        None, "--baseline", help="regression-check: a known-good run folder (default: the bundled one)."
    ),
    max_slowdown: float = typer.Option(
        1.5, "--max-slowdown", help="regression-check: end-to-end ratio allowed on the same hardware."
    ),
    home: Optional[Path] = HomeOpt,
):
    """Verify a skill's outputs. Prints a JSON list of what is missing (files, keys, values out of
    range; each with a hint) and exits 1 if it is not empty, 0 if the skill's outputs are complete."""

    scope = Scope(
        model=model,
        dtypes=csv_list(dtype),
        targets=csv_list(target) if target else None,
        size=size,
        emulator=emulator,
        baseline=baseline,
        max_slowdown=max_slowdown,
    )
    skill = checks.skill_name(skill)
    problems = checks.run(skill, root_of(home), scope)
    emit_json([p.to_json() for p in problems])
    if problems:
        err.print(f"check {escape(skill)}: {len(problems)} problem(s)")
        raise typer.Exit(1)
    err.print(f"check {escape(skill)} ok")
