"""`sme2 mcp`: the platform's operations as MCP tools for AI assistants (stdio transport)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kit.agent import server
from kit.cli.common import HomeOpt, command, root_of

app = typer.Typer()


@app.command("mcp")
@command
def mcp_cmd(home: Optional[Path] = HomeOpt):
    """Serve the MCP tools over stdin/stdout (list_models, list_devices, export_model, profile,
    sql, compare, report, check) on one data root. Started by an assistant's MCP client, not by
    hand: it speaks JSON-RPC, one message per line."""

    server.serve(root_of(home))
