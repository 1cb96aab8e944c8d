"""The `sme2` application: the command groups of kit/cli, plus commands other installed packages
plug in through the `sme2.commands` entry point group (the Dagster code location adds `pipeline`,
`ui` and `worker` that way, so kit itself never imports Dagster).

Commands load lazily: `sme2 --help`, `sme2 --version` and a mistyped command import no command
module (each pulls in pandas, DuckDB, torch or Dagster: seconds), so they answer at once. The
listing's one-line helps live in COMMANDS; tests/test_cli.py checks every command is listed and loads."""

from __future__ import annotations

import difflib
import importlib
import sys
from importlib import metadata
from importlib.metadata import entry_points

import typer
import typer.core
from rich.markup import escape

from kit.cli.common import err
from kit.core.errors import Sme2Error

PLUGIN_GROUP = "sme2.commands"

# name: (module, its typer app, one-line help). A module of None is a plugin command: found
# through the entry point of that name in PLUGIN_GROUP.
COMMANDS: dict[str, tuple[str | None, str, str]] = {
    "models": ("kit.cli.models", "app", "List model packages, their dtypes and sizes, and any problems."),
    "export": ("kit.cli.models", "app", "Export model variants to .pte + ETRecord + inputs + export_meta.json."),
    "setup": ("kit.cli.devices", "app", "Set up the emulated SME2 pair (QEMU, aarch64 toolchain); --counts: counting."),
    "devices": ("kit.cli.devices", "app", "List devices, their detected capabilities and runner recipes per target."),
    "build-runner": ("kit.cli.devices", "app", "Build (or reuse) native runners: the wheel runner, or from source."),
    "doctor": ("kit.cli.devices", "app", "What this machine and a target are; --report: one file for a maintainer."),
    "source": (
        "kit.cli.devices",
        "source_app",
        "Fetch the ExecuTorch source tree (wheel's commit) the source recipe builds.",
    ),
    "profile": ("kit.cli.profiling", "app", "Export and build if needed, then timing, ETDump (and counting) runs."),
    "analyze": ("kit.cli.profiling", "app", "Re-analyse a run folder from its ETDump and timing files."),
    "runs": ("kit.cli.profiling", "app", "List runs, newest first; --latest prints the newest run folder."),
    "run": ("kit.cli.configs", "app", "Run an experiment config (ours in TOML, Arm's kit's JSON)."),
    "sql": ("kit.cli.warehouse", "app", "Run one read-only SELECT (or EXPLAIN of one) over the warehouse."),
    "query": ("kit.cli.warehouse", "app", "Run one of the everyday questions (sme2 query --list)."),
    "compare": ("kit.cli.analysis", "app", "Two runs side by side: SME2 off vs on, threads, dtypes, devices."),
    "report": ("kit.cli.analysis", "app", "Markdown + self-contained HTML report for a model variant."),
    "trace": ("kit.cli.analysis", "app", "ETDump to a Chrome/Perfetto trace (ui.perfetto.dev)."),
    "datamovement": ("kit.cli.analysis", "app", "Transposes and copies: time, share, and the modules causing them."),
    "regressions": ("kit.cli.analysis", "app", "Regression detection over history; --counts: exact, for CI."),
    "import-arm-kit": ("kit.cli.analysis", "app", "Import an existing run folder of Arm's SME2 kit."),
    "armkit-files": ("kit.cli.analysis", "app", "(Re)write Arm's kit files in run folders."),
    "explore": ("kit.cli.analysis", "app", "Model Explorer node data for a run."),
    "export-hud": ("kit.cli.analysis", "app", "Current results as PyTorch benchmark dashboard v3 JSON records."),
    "kernels": ("kit.cli.analysis", "app", "Microkernels XNNPACK chose, SME2 on beside off."),
    "check": ("kit.cli.skills", "app", "Verify a skill's outputs."),
    "mcp": ("kit.cli.agent", "app", "Serve the MCP tools over stdin/stdout on one data root."),
    "warehouse": ("kit.cli.warehouse", "warehouse_app", "Warehouse maintenance: info, ingestion, rebuild, lab store."),
    "docs": ("kit.cli.docs", "docs_app", "The learning path's generated assets (docs/learning-path/)."),
    "pipeline": (None, "", "Materialize the whole Dagster asset graph for a model; ends with `pipeline ok`."),
    "ui": (None, "", "Start the Dagster UI and daemon (sensors, nightly schedule) on this data root."),
    "worker": (None, "", "Run this lab host's Dagster steps: a Celery worker on its queue."),
}
HELP = (
    "Per-operator ExecuTorch profiling on Arm CPUs with SME2 on and off.\n\n"
    "Everything is written under the data root: --home, else $SME2_HOME, else ./.sme2"
)


def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


class LazyGroup(typer.core.TyperGroup):
    """The root group: its commands are imported the first time they are called (or asked for help);
    listing them reads COMMANDS only."""

    def list_commands(self, ctx) -> list[str]:
        plugins = _plugins()
        known = [n for n, (module, _, _) in COMMANDS.items() if module is not None or n in plugins]
        return known + sorted(n for n in plugins if n not in COMMANDS)

    def get_command(self, ctx, name: str):
        module, attr, _ = COMMANDS.get(name, (None, "", ""))
        try:
            if module is None:
                ep = _plugins().get(name)
                if ep is None:
                    return None
                app = ep.load()
            else:
                app = getattr(importlib.import_module(module), attr)
        except ImportError as e:  # a plugin whose dependencies are missing: the rest still works
            err.print(f"[dim]sme2: command {escape(name)} unavailable ({escape(str(e))})[/]")
            return None
        if attr.endswith("_app"):  # a whole group (sme2 warehouse ..., sme2 docs ...), even of one command
            group = typer.main.get_group(app)
            group.name = name
            return group
        cmd = typer.main.get_command(app)
        if hasattr(cmd, "list_commands"):  # a module's app of several commands
            return cmd.get_command(ctx, name)
        return cmd if cmd.name == name or len(app.registered_commands) == 1 else None

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        known = self.list_commands(ctx)
        if name and not name.startswith("-") and name not in known:
            close = difflib.get_close_matches(name, known, n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} (sme2 --help lists them)")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            short = COMMANDS.get(name, (None, "", ""))[2] or f"(from the {PLUGIN_GROUP} entry point {name})"
            rows.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("sme2-platform")
        except metadata.PackageNotFoundError:  # run from a checkout without installing
            version = "unknown (not installed: pip install -e .)"
        typer.echo(f"sme2 {version}")
        raise typer.Exit()


# rich_markup_mode=None: the plain help formatter, which lists commands through format_commands
# above (rich's would import every command to read its help).
app = typer.Typer(cls=LazyGroup, add_completion=False, no_args_is_help=True, rich_markup_mode=None, help=HELP)


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    pass


cli = typer.main.get_command(app)


def main() -> None:
    try:
        cli(prog_name="sme2")
    except Sme2Error as e:  # raised outside a command's own handler
        err.print(f"error: {escape(str(e))}")
        sys.exit(2)
