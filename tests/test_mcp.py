"""`sme2 mcp` driven by the MCP SDK's own client over stdio: the server starts as a child process,
lists its tools, profiles for real, answers SQL through the read-only guard, runs a skill check,
and refuses bad names and writes with the kit's messages."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

REPO = Path(__file__).resolve().parent.parent
TOOLS = {"list_models", "list_devices", "export_model", "profile", "sql", "compare", "report", "check"}


def _server(home) -> StdioServerParameters:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    return StdioServerParameters(
        command=sys.executable, args=["-m", "kit.cli", "mcp", "--home", str(home.path)], env=env
    )


@pytest.mark.slow
def test_mcp_server_answers_the_sdk_client(home, exports, native_runner):
    async def session():
        async with Client(_server(home), read_timeout_seconds=600) as client:
            listed = await client.list_tools()
            out = {"tools": {t.name: t for t in listed.tools}}
            out["models"] = await client.call_tool("list_models", {})
            out["profile"] = await client.call_tool(
                "profile",
                {
                    "model": "tiny_seg",
                    "dtypes": ["fp32"],
                    "targets": ["host.sme2-off"],
                    "iterations": 5,
                    "warmup": 1,
                    "size": "small",
                },
            )
            out["sql"] = await client.call_tool(
                "sql", {"query": "SELECT variant, target FROM current_runs WHERE variant = 'tiny_seg-fp32'"}
            )
            out["copy"] = await client.call_tool("sql", {"query": "COPY runs TO '/tmp/stolen.csv'"})
            out["check"] = await client.call_tool("check", {"skill": "smoke-test", "dtypes": ["fp32"]})
            out["bad_name"] = await client.call_tool("export_model", {"model": "../../etc", "dtypes": ["fp32"]})
            out["too_many"] = await client.call_tool("profile", {"iterations": 5000})  # valid, above the agent cap
            return out

    out = anyio.run(session)
    assert set(out["tools"]) == TOOLS
    assert "read-only SELECT" in out["tools"]["sql"].description
    assert "targets" in out["tools"]["profile"].input_schema["properties"]

    models = {m["name"]: m for m in out["models"].structured_content["models"]}
    assert models["tiny_seg"]["ok"] and "int8" in models["tiny_seg"]["dtypes"]

    run = out["profile"].structured_content["runs"][0]
    assert not out["profile"].is_error and run["target"] == "host.sme2-off" and run["e2e_median_ms"] > 0
    assert {c["category"] for c in run["categories"]} >= {"Convolution", "Data Movement"}

    rows = out["sql"].structured_content["rows"]
    assert ["tiny_seg-fp32", "host.sme2-off"] in rows

    assert out["copy"].is_error and "read-only" in out["copy"].content[0].text
    assert not Path("/tmp/stolen.csv").exists()

    assert out["check"].structured_content == {"skill": "smoke-test", "passed": True, "problems": []}

    assert out["bad_name"].is_error and "invalid model name" in out["bad_name"].content[0].text
    assert out["too_many"].is_error and "above 1000" in out["too_many"].content[0].text
