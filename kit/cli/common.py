"""What every `sme2` command shares: the data-root, JSON and format options, the consoles, the
progress bar that follows the kit's progress messages, tables, and the error handling that turns
an Sme2Error into a clean message and exit status 2."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text
from rich.table import Table

from kit.core.errors import Sme2Error
from kit.core.home import DataRoot

# Wide tables when piped (CI logs, files); the terminal's width otherwise.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

HomeOpt = typer.Option(None, "--home", help="Data root (default: $SME2_HOME or ./.sme2).", show_default=False)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
FormatOpt = typer.Option("table", "--format", "-f", help="table, csv or json (--json is the same as -f json).")
ModelsDirOpt = typer.Option(None, "--models-dir", help="Model packages folder.")


def root_of(home: Optional[Path]) -> DataRoot:
    return DataRoot.resolve(home)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


class _Count(TextColumn):
    """`done/total` while a total is known, nothing otherwise (never `0/None`)."""

    def __init__(self):
        super().__init__("")

    def render(self, task):
        return Text("" if task.total is None else f"{task.completed:.0f}/{task.total:.0f}")


@contextlib.contextmanager
def progress(total: int | None, quiet: bool):
    """A progress bar whose description follows the kit's progress messages; yields (say, advance)."""
    with counted_progress(total, quiet) as (say, advance, _):
        yield say, advance


@contextlib.contextmanager
def counted_progress(total: int | None, quiet: bool):
    """progress() plus `count(done, total)` for work whose total is learnt as it goes (a build's
    steps): yields (say, advance, count). The bar shows done/total and the time left once known."""
    if quiet:
        yield (lambda msg: None), (lambda: None), (lambda done, total: None)
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Count(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as prog:
        task = prog.add_task("starting", total=total)
        yield (
            (lambda msg: prog.update(task, description=msg)),
            (lambda: prog.advance(task)),
            (lambda done, of: prog.update(task, completed=done, total=of)),
        )


def fail(e: Sme2Error) -> None:
    # Messages carry user input and regexes such as [a-z0-9_]+: never let rich read them as markup.
    err.print(f"[bold red]error:[/] {escape(e.message)}")
    if e.hint:
        err.print(f"  [yellow]->[/] {escape(e.hint)}")
    raise typer.Exit(2)


def command(fn):
    """A command whose Sme2Errors become clean messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Sme2Error as e:
            fail(e)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # A read-only or foreign data root: say where, not a traceback.
            fail(
                Sme2Error(
                    f"cannot write {e.filename or 'a file'}: {e.strerror}",
                    "use a data root this user can write: --home DIR or $SME2_HOME",
                )
            )

    return wrapper


def cell(value) -> str:
    """A table cell: missing values (None, NaN, NaT) as a dash; floats with 4 significant digits
    but never fewer decimals than needed to tell a small value from zero (0.0004 ms, not 0.000);
    large ones with thousands separators."""
    if value is None or value != value:  # NaN and NaT are the values unequal to themselves
        return "-"
    if isinstance(value, float):
        if value == 0 or abs(value) >= 1e15:
            return f"{value:.4g}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.4g}" if abs(value) >= 1e-4 else f"{value:.2e}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return escape(str(value))


def _fits(df, cells: list[list[str]], width: int) -> bool:
    widths = [max([len(str(c))] + [len(row[i]) for row in cells]) for i, c in enumerate(df.columns)]
    return sum(widths) + 3 * len(widths) + 1 <= width


def print_frame(df, fmt: str, title: str = "") -> None:
    """A frame as json, csv, or a table: one that fits the terminal, else one block per row
    (`column: value` lines, never cut or wrapped, so long paths and ids copy whole)."""
    if fmt == "json":
        sys.stdout.write(df.to_json(orient="records", date_format="iso", indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "table":
        cells = [[cell(v) for v in row] for row in df.itertuples(index=False)]
        if _fits(df, cells, console.width):
            t = Table(title=title or None)
            for col in df.columns:
                t.add_column(str(col), overflow="fold")
            for row in cells:
                t.add_row(*row)
            console.print(t)
        else:
            if title:
                console.print(f"[bold]{escape(title)}[/]")
            pad = max(len(str(c)) for c in df.columns)
            for i, row in enumerate(cells):
                console.print(f"[dim]-- row {i + 1} --[/]")
                for col, value in zip(df.columns, row):
                    console.print(f"{escape(str(col)).rjust(pad)}: {value}", soft_wrap=True)
        console.print(f"[dim]{len(df)} rows[/]")
    else:
        raise Sme2Error(f"unknown format {fmt!r}", "use table, csv or json")
