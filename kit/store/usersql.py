"""The one way SQL typed by a user reaches the warehouse: `sme2 sql` today, and any Dagster op,
MCP tool or web endpoint that takes SQL text tomorrow must call `run_user_sql` too.

DuckDB's `read_only=True` protects only the database file: table functions (`read_csv`,
`read_text`, `glob`, `read_parquet`), `COPY ... TO` (also inside `EXPLAIN ANALYZE`), ATTACH,
INSTALL/LOAD and SET still reach the machine. So the connection is opened read-only with external
access and extension auto-loading off and the configuration locked before any user text runs, and
only one SELECT (or an EXPLAIN of one SELECT) is accepted. Both layers hold on their own: the
statement check refuses `COPY` before it runs, and the locked settings would stop it anyway."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from kit.core.errors import WarehouseError
from kit.store.connection import LOCK_WAIT_S, connect
from kit.store.schema import TABLES
from kit.store.shared import SharedStore

# Applied when the file is opened, before the first statement; lock_configuration makes every
# later SET / RESET / PRAGMA that changes a setting fail, so user SQL cannot undo the others.
LOCKED_CONFIG = {
    "enable_external_access": False,  # no files, URLs, ATTACH, COPY TO or extension install/load
    "allow_community_extensions": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "python_enable_replacements": False,  # no scans of the caller's Python DataFrames by name
    "lock_configuration": True,
}
ALLOWED = (
    "one SELECT statement (WITH, FROM, VALUES, DESCRIBE, SHOW and SUMMARIZE count as SELECT), or EXPLAIN"
    " [ANALYZE] of one SELECT; over the tables " + ", ".join(TABLES) + " and the view current_runs"
)
# EXPLAIN, then optionally ANALYZE and a parenthesized option list; the rest is the explained
# statement. Anything else (a comment in between, nested parentheses) does not match: refused.
_EXPLAIN = re.compile(r"^\s*EXPLAIN\s+(?:ANALY[SZ]E\s+)?(?:\([^()]*\)\s*)?(?P<inner>\S.*)$", re.I | re.S)


def _refused(what: str) -> WarehouseError:
    return WarehouseError(f"sme2 sql is read-only; refused {what}", f"allowed: {ALLOWED}")


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def checked_statement(conn: duckdb.DuckDBPyConnection, text: str):
    """The single statement of `text` if it is allowed, else a WarehouseError naming what was
    refused and what is allowed. Only parses: nothing runs."""
    try:
        statements = conn.extract_statements(text)
    except duckdb.Error as e:
        raise WarehouseError(f"SQL does not parse: {_first_line(e)}", "check the SQL") from e
    if len(statements) != 1:
        kinds = ", ".join(st.type.name for st in statements) or "none"
        raise _refused(f"{len(statements)} statements ({kinds}): send exactly one")
    statement = statements[0]
    if statement.type == duckdb.StatementType.SELECT:
        return statement
    if statement.type == duckdb.StatementType.EXPLAIN:
        match = _EXPLAIN.match(statement.query)
        try:
            inner = conn.extract_statements(match["inner"]) if match else []
        except duckdb.Error:
            inner = []
        if len(inner) == 1 and inner[0].type == duckdb.StatementType.SELECT:
            return statement
        explained = inner[0].type.name if len(inner) == 1 else "a statement that is not one plain SELECT"
        raise _refused(f"EXPLAIN of {explained}")
    keyword = (statement.query.split() or ["?"])[0].upper()
    kind = statement.type.name
    raise _refused(f"{keyword} (a {kind} statement, not a SELECT)" if keyword != kind else f"{kind} (not a SELECT)")


# With a shared store the union views read Parquet files: external access is turned off (and the
# configuration locked) only after the store's folder is allowed and the views exist.
LAST_LOCKS = ("enable_external_access", "lock_configuration")


@contextlib.contextmanager
def user_sql_connection(
    path: Path, wait_s: float = LOCK_WAIT_S, shared: SharedStore | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only, locked-down connection to the warehouse for user SQL. Never falls back to a
    read-write connection: if this process holds the file with other settings (a writer, or an
    ordinary reader), it waits for that connection to close, then raises a WarehouseError.

    (An in-memory database that ATTACHes the file READ_ONLY is no way around that: DuckDB refuses
    to attach a file another database instance of the same process has open.)"""
    if shared is None:
        opened = connect(Path(path), read_only=True, wait_s=wait_s, config=LOCKED_CONFIG)
    else:
        first = {k: v for k, v in LOCKED_CONFIG.items() if k not in LAST_LOCKS}
        opened = connect(Path(path), read_only=True, wait_s=wait_s, config=first)
    with opened as conn:
        if shared is not None:
            # Only the store's folder stays readable (DuckDB's allowed_directories), then the rest
            # is locked exactly as without a store.
            # (Settings are the database instance's: a concurrent user-SQL connection of this
            # process may have locked them already, with the same values; the check below fails
            # closed whatever happened.)
            for name, value in shared.sql_config().items():
                with contextlib.suppress(duckdb.InvalidInputException):
                    conn.execute(f"SET {name} = ?", [value])
            shared.union_views(conn)
            for name in LAST_LOCKS:
                with contextlib.suppress(duckdb.InvalidInputException):
                    conn.execute(f"SET {name} = {str(LOCKED_CONFIG[name]).lower()}")
        # Fail closed if a DuckDB version ever ignores one of the settings.
        for name, expected in LOCKED_CONFIG.items():
            actual = conn.execute("SELECT current_setting(?)", [name]).fetchone()[0]
            if actual != expected:
                raise WarehouseError(
                    f"cannot lock down the SQL connection to {path}: {name} is {actual!r}, not {expected!r}",
                    f"this DuckDB ({duckdb.__version__}) does not honour the setting; sme2 sql stays disabled",
                )
        yield conn


def run_user_sql(path: Path, text: str, wait_s: float = LOCK_WAIT_S, shared: SharedStore | None = None) -> pd.DataFrame:
    """Run one user-supplied SELECT (or EXPLAIN of one) over the warehouse at `path` (and the union
    with a lab's shared store); the result as a DataFrame. Every refusal and failure is a
    WarehouseError saying what to do."""
    with user_sql_connection(path, wait_s, shared) as conn:
        statement = checked_statement(conn, text)
        try:
            return conn.execute(statement).df()
        except duckdb.PermissionException as e:
            raise WarehouseError(
                f"sme2 sql cannot reach files, URLs or extensions: {_first_line(e)}",
                f"query the warehouse only; allowed: {ALLOWED}",
            ) from e
        except duckdb.Error as e:
            if "configuration has been locked" in str(e):
                raise WarehouseError(f"sme2 sql cannot change settings: {_first_line(e)}", f"allowed: {ALLOWED}") from e
            raise WarehouseError(
                f"query failed: {_first_line(e)}",
                "check the SQL; tables: " + ", ".join(TABLES) + ", current_runs",
            ) from e
