"""Verification of the agent skills (skills/<name>/SKILL.md): one check per skill that lists what is
missing (files, keys, values out of range) instead of trusting a command's exit status, the
artifact contract `sme2 pipeline` reports, and the regression check against a known-good run.
`sme2 check <skill>` and the MCP server's `check` tool both call `checks.run`."""

__all__ = [  # the sub-package's public modules: `from kit.skills import *`, or import each by name
    "checks",
    "contract",
    "doctor",
    "knowngood",
]
