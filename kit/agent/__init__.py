"""The platform for AI assistants: the operations of the command line as typed tools (list models
and devices, export, profile, read-only SQL, compare, report, check) that return JSON, and the
MCP server (`sme2 mcp`, stdio) that exposes them, so an assistant drives the platform without
parsing terminal output. Least privilege: the data root is fixed when the server starts, every
name is validated, SQL goes through the one read-only guard, and no tool takes a file path."""

__all__ = [  # the sub-package's public modules: `from kit.agent import *`, or import each by name
    "server",
    "tools",
]
