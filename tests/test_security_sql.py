"""User SQL is bounded: a time limit, cancellation that really stops DuckDB (in the CLI on Ctrl-C,
in the MCP server on a client's cancellation or disconnect), and at most max_rows + 1 rows built."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kit.core.errors import WarehouseError
from kit.core.home import DataRoot
from kit.store import usersql
from kit.store.warehouse import Warehouse

REPO = Path(__file__).resolve().parent.parent
ENDLESS = "SELECT count(*) FROM range(100000000000000) t(i) WHERE i % 7 = 3"


@pytest.fixture()
def wh(tmp_path) -> Warehouse:
    w = Warehouse.at(DataRoot.resolve(tmp_path / "home"))
    w.ensure()
    return w


def test_a_query_past_its_time_limit_is_stopped(wh):
    query = wh.user_query(ENDLESS, timeout_s=1.0)
    with pytest.raises(WarehouseError, match="time limit of 1 s"):
        query.result()
    assert query.wait(10), "the query thread ended: DuckDB was interrupted, not left running"


def test_a_cancelled_query_stops(wh):
    query = wh.user_query(ENDLESS, timeout_s=600)
    threading.Timer(0.5, query.cancel).start()
    with pytest.raises(WarehouseError, match="cancelled"):
        query.result()
    assert query.done()


def test_at_most_max_rows_plus_one_rows_are_built(wh):
    df = wh.sql("SELECT i, repeat('x', 100) AS pad FROM range(40000000) t(i)", max_rows=1)
    assert len(df) == 2  # one shown, one more telling the caller it was cut
    explained = wh.sql("EXPLAIN SELECT 1", max_rows=1)  # not a plain SELECT: run as it is
    assert len(explained) >= 1
    with pytest.raises(WarehouseError, match="time limit .* is not positive"):
        usersql.UserQuery(wh.path, "SELECT 1", timeout_s=0)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _as_from_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_stops_sme2_sql(wh):
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit.cli", "sql", ENDLESS, "--timeout", "600", "--home", str(wh.path.parent)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal starts it: a child inherits an ignored or blocked SIGINT from whatever ran
        # the tests (then Python installs no Ctrl-C handler at all), so both are reset.
        preexec_fn=_as_from_a_terminal,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    time.sleep(4)  # past start-up, into the query
    assert proc.poll() is None
    masks = [ln for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines() if ln.startswith("Sig")]
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack on stderr
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"sme2 sql kept running after Ctrl-C; signals {masks}; stacks:\n{err[-4000:]}")
    assert proc.returncode != 0


class _Mcp:
    """`sme2 mcp` spoken to by hand (newline-delimited JSON-RPC), to cancel and to hang up."""

    def __init__(self, home: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kit.cli", "mcp", "--home", str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}})  # fmt: skip
        assert json.loads(self.proc.stdout.readline())["id"] == 1
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def call_sql(self, request_id: int, query: str) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                   "params": {"name": "sql", "arguments": {"query": query}}})  # fmt: skip


@pytest.mark.slow
def test_mcp_cancellation_stops_the_query(wh):
    mcp = _Mcp(wh.path.parent)
    try:
        mcp.call_sql(2, ENDLESS)
        time.sleep(3)
        busy = _cpu_seconds(mcp.proc.pid)
        time.sleep(2)
        assert _cpu_seconds(mcp.proc.pid) - busy > 0.2, "the query should be running"
        mcp.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2}})
        time.sleep(3)  # DuckDB checks for interrupts often; the thread then ends
        idle = _cpu_seconds(mcp.proc.pid)
        time.sleep(3)
        assert _cpu_seconds(mcp.proc.pid) - idle < 0.2, "the cancelled query kept a core busy"
    finally:
        mcp.proc.kill()


@pytest.mark.slow
def test_mcp_server_exits_when_its_client_goes_away(wh):
    mcp = _Mcp(wh.path.parent)
    mcp.call_sql(2, ENDLESS)
    time.sleep(3)
    mcp.proc.stdin.close()  # the client is gone
    try:
        mcp.proc.wait(30)
    except subprocess.TimeoutExpired:
        mcp.proc.kill()
        pytest.fail("sme2 mcp stayed up with its client gone")
