"""`sme2 mcp`: the tools of kit.agent.tools over the Model Context Protocol, stdio transport.

An assistant's client starts `sme2 mcp [--home DIR]` as a child process and talks JSON-RPC over
its stdin and stdout; the SDK points the process's own fd 1 at stderr while it serves, so runner
builds and logs never corrupt the protocol stream. A refusal or failure (an Sme2Error) comes back
as a tool error carrying the message and the hint; anything unexpected is logged on stderr and
reported without internals."""

from __future__ import annotations

import functools
import inspect

from kit.core.versions import package_version
from kit.agent.tools import make_tools
from kit.core.errors import Sme2Error
from kit.core.home import DataRoot

SERVER_NAME = "sme2"
INSTRUCTIONS = (
    "Per-operator ExecuTorch profiling on Arm CPUs with SME2 on and off. Typical flow: list_models, "
    "list_devices, export_model, profile (targets such as host.sme2-off or the emulated pair "
    "armv9-qemu.sme2-on and armv9-qemu.sme2-off), compare, report, then check each skill. Emulated "
    "times are not hardware times: compare kernels and operator mix there, not milliseconds. sql "
    "runs one read-only SELECT over the warehouse."
)


def build_server(root: DataRoot):
    """An MCPServer with every tool bound to `root`."""
    # The SDK takes ~3 s to import: only `sme2 mcp` pays for it, not every sme2 command.
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer(
        SERVER_NAME, instructions=INSTRUCTIONS, version=package_version("sme2-platform") or "", log_level="WARNING"
    )

    def guarded(fn):
        if inspect.iscoroutinefunction(fn):  # a tool that can be cancelled while it waits (sql)

            @functools.wraps(fn)
            async def call_async(*args, **kwargs):
                try:
                    return await fn(*args, **kwargs)
                except Sme2Error as e:
                    raise ToolError(str(e)) from e

            return call_async

        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Sme2Error as e:  # the user-facing message and what to do, as the CLI prints them
                raise ToolError(str(e)) from e

        return call

    for fn in make_tools(root):
        server.add_tool(guarded(fn), name=fn.__name__, description=(fn.__doc__ or "").strip(), structured_output=True)
    return server


def serve(root: DataRoot) -> None:
    """Serve the tools over stdio until the client closes the connection."""
    build_server(root).run("stdio")
