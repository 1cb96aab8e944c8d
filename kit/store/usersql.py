"""The one way SQL typed by a user reaches the warehouse: `sme2 sql` today, and any Dagster op,
MCP tool or web endpoint that takes SQL text tomorrow must call `run_user_sql` too.

DuckDB's `read_only=True` protects only the database file: table functions (`read_csv`,
`read_text`, `glob`, `read_parquet`), `COPY ... TO` (also inside `EXPLAIN ANALYZE`), ATTACH,
INSTALL/LOAD and SET still reach the machine. So the connection is opened read-only with external
access and extension auto-loading off and the configuration locked before any user text runs, and
only one SELECT (or an EXPLAIN of one SELECT) is accepted. Both layers hold on their own: the
statement check refuses `COPY` before it runs, and the locked settings would stop it anyway.

User SQL is also bounded: a time limit (60 s unless set; the query is interrupted, not left
running), a memory limit (2 GB unless set), and at most `max_rows` rows ever leave DuckDB (the
SELECT is wrapped in a LIMIT, so a `max_rows=1` over 40 M rows builds one row). A `UserQuery` runs in
a thread its caller can cancel (Ctrl-C in the CLI, an MCP client's cancellation or disconnect):
cancelling interrupts DuckDB and the thread ends."""

from __future__ import annotations

import contextlib
import re
import threading
import time
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
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_LIMIT = "2GB"
LOCKED_CONFIG = {
    "memory_limit": DEFAULT_MEMORY_LIMIT,  # a user query cannot take the machine's memory
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


_LAKE_NAMES = re.compile(r"\b(?:ducklake_\w+|sme2_lake)\b", re.I)


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
    lake = _LAKE_NAMES.search(statement.query)
    if lake:
        # The lake is read through the views (each run once, the snapshot asked for); its own
        # functions include maintenance that deletes files.
        raise _refused(f"{lake.group(0)!r}: the lab's DuckLake is read through the table names, not directly")
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
    path: Path, wait_s: float = LOCK_WAIT_S, shared: SharedStore | None = None, at: int | str | None = None
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
            shared.union_views(conn, at)
            for name in LAST_LOCKS:
                with contextlib.suppress(duckdb.InvalidInputException):
                    conn.execute(f"SET {name} = {str(LOCKED_CONFIG[name]).lower()}")
        # Fail closed if a DuckDB version ever ignores one of the settings.
        for name, expected in LOCKED_CONFIG.items():
            if name == "memory_limit":  # DuckDB reports it in its own units ("1.8 GiB")
                continue
            actual = conn.execute("SELECT current_setting(?)", [name]).fetchone()[0]
            if actual != expected:
                raise WarehouseError(
                    f"cannot lock down the SQL connection to {path}: {name} is {actual!r}, not {expected!r}",
                    f"this DuckDB ({duckdb.__version__}) does not honour the setting; sme2 sql stays disabled",
                )
        yield conn


def _limited(statement, max_rows: int | None) -> str:
    """The statement's text, capped at max_rows + 1 rows when it is a plain SELECT (one more row
    than shown tells whether the answer was cut)."""
    text = statement.query.strip().rstrip(";")
    if max_rows is None or statement.type != duckdb.StatementType.SELECT:
        return text
    return f"SELECT * FROM ({text}) AS user_query LIMIT {int(max_rows) + 1}"


class UserQuery:
    """One user SELECT running in its own thread: `result()` waits for it (and interrupts it at its
    time limit); `cancel()` interrupts it from any thread. DuckDB stops at its next check and the
    thread ends; nothing keeps running after a cancel, a timeout or a client that went away."""

    def __init__(
        self,
        path: Path,
        text: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_rows: int | None = None,
        shared: SharedStore | None = None,
        wait_s: float = LOCK_WAIT_S,
        at: int | str | None = None,
    ):
        if not timeout_s > 0:
            raise WarehouseError(f"SQL time limit {timeout_s!r} s is not positive", "give a number of seconds > 0")
        self.path, self.text, self.timeout_s, self.max_rows = Path(path), text, timeout_s, max_rows
        self.shared, self.wait_s, self.at = shared, wait_s, at
        self._conn = None
        self._cancelled = threading.Event()
        self._started = threading.Event()
        self._outcome: tuple[pd.DataFrame | None, BaseException | None] = (None, None)
        self._thread = threading.Thread(target=self._run, name="sme2-user-sql", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with user_sql_connection(self.path, self.wait_s, self.shared, self.at) as conn:
                statement = checked_statement(conn, self.text)
                self._conn = conn
                self._started.set()
                if self._cancelled.is_set():
                    raise duckdb.InterruptException("cancelled before it started")
                df = conn.execute(_limited(statement, self.max_rows)).df()
                self._outcome = (df, None)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread as it is
            self._outcome = (None, e)
        finally:
            self._conn = None
            self._started.set()

    def cancel(self) -> None:
        self._cancelled.set()
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.interrupt()

    def stop(self, seconds: float = 10.0) -> bool:
        """Cancel and wait for the thread to end. The interrupt is repeated: one that reaches DuckDB
        between the connection being ready and the query starting is lost (it only stops a running
        query). True when the thread ended."""
        end = time.monotonic() + seconds
        self.cancel()
        while not self.wait(0.1):
            if time.monotonic() >= end:
                return False
            self.cancel()
        return True

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, seconds: float | None = None) -> bool:
        self._thread.join(seconds)
        return self.done()

    def result(self) -> pd.DataFrame:
        """Wait for the answer (interrupting the query at its time limit); a WarehouseError for a
        refusal, a failure, a timeout or a cancel. KeyboardInterrupt cancels the query first."""
        deadline = time.monotonic() + self.timeout_s
        try:
            while not self.wait(min(0.2, max(deadline - time.monotonic(), 0))):
                if time.monotonic() >= deadline:
                    self.stop()
                    raise WarehouseError(
                        f"the query ran longer than its time limit of {self.timeout_s:g} s and was stopped",
                        "narrow it (WHERE, LIMIT, fewer joins), or give more time: sme2 sql --timeout SECONDS",
                    )
        except KeyboardInterrupt:
            self.stop()
            raise
        df, error = self._outcome
        if error is None:
            return df
        if self._cancelled.is_set() and isinstance(error, duckdb.InterruptException):
            raise WarehouseError("the query was cancelled and stopped", "run it again when you need it") from error
        raise _as_warehouse_error(error)


def _as_warehouse_error(e: BaseException) -> BaseException:
    if isinstance(e, WarehouseError) or not isinstance(e, duckdb.Error):
        return e
    if isinstance(e, duckdb.PermissionException):
        return WarehouseError(
            f"sme2 sql cannot reach files, URLs or extensions: {_first_line(e)}",
            f"query the warehouse only; allowed: {ALLOWED}",
        )
    if "configuration has been locked" in str(e):
        return WarehouseError(f"sme2 sql cannot change settings: {_first_line(e)}", f"allowed: {ALLOWED}")
    if isinstance(e, duckdb.OutOfMemoryException):
        return WarehouseError(
            f"the query needs more than the {DEFAULT_MEMORY_LIMIT} user queries may use: {_first_line(e)}",
            "aggregate or filter in SQL instead of returning every row",
        )
    return WarehouseError(
        f"query failed: {_first_line(e)}", "check the SQL; tables: " + ", ".join(TABLES) + ", current_runs"
    )


def run_user_sql(
    path: Path,
    text: str,
    wait_s: float = LOCK_WAIT_S,
    shared: SharedStore | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_rows: int | None = None,
) -> pd.DataFrame:
    """Run one user-supplied SELECT (or EXPLAIN of one) over the warehouse at `path` (and the union
    with a lab's shared store), within its time and memory limits, at most max_rows + 1 rows; the
    result as a DataFrame. Every refusal and failure is a WarehouseError saying what to do."""
    query = UserQuery(path, text, timeout_s=timeout_s, max_rows=max_rows, shared=shared, wait_s=wait_s)
    return query.result()
