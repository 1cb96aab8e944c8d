"""The `sme2` application: the command groups of kit/cli, plus commands other installed packages
plug in through the `sme2.commands` entry point group (the Dagster code location adds `pipeline`
and `ui` that way, so kit itself never imports Dagster)."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer
from rich.markup import escape

from kit.cli import agent, analysis, configs, devices, docs, models, profiling, skills, warehouse
from kit.cli.common import err
from kit.core.errors import Sme2Error

PLUGIN_GROUP = "sme2.commands"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Per-operator ExecuTorch profiling on Arm CPUs with SME2 on and off.\n\nEverything is written under the data root: --home, else $SME2_HOME, else ./.sme2",
)


def merge(group: typer.Typer) -> None:
    """Add a group's commands at the top level (`sme2 <command>`)."""
    app.registered_commands.extend(group.registered_commands)
    app.registered_groups.extend(group.registered_groups)


for group in (models.app, devices.app, profiling.app, configs.app, warehouse.app, analysis.app, skills.app, agent.app):
    merge(group)
app.add_typer(warehouse.warehouse_app, name="warehouse")
app.add_typer(docs.docs_app, name="docs")

for ep in entry_points(group=PLUGIN_GROUP):
    try:
        merge(ep.load())
    except ImportError as e:  # a plugin whose dependencies are missing: the rest still works
        err.print(f"[dim]sme2: commands from {escape(ep.value)} unavailable ({escape(str(e))})[/]")


def main() -> None:
    try:
        app()
    except Sme2Error as e:  # raised outside a command's own handler
        err.print(f"error: {escape(str(e))}")
        sys.exit(2)
