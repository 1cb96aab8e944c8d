"""`sme2` as a user runs it, in a subprocess: the one helper every test that needs a real process
uses (a new interpreter, the console's exit code, stdout and stderr apart). `sme2_here` runs the
same command in this process with typer's CliRunner (same exit code and streams) for tests where a
new interpreter proves nothing: it saves the CLI's start-up (seconds per call when torch is
imported) on every call after the first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent


def sme2(
    *args: str,
    home=None,
    env: dict | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """Run `sme2 ARGS` (python -m kit.cli) with SME2_HOME = `home` (a path or a DataRoot) and `env`
    on top of this process's environment; with `check`, a non-zero exit fails with both streams."""
    full = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    if home is not None:
        full["SME2_HOME"] = str(getattr(home, "path", home))
    full.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "kit.cli", *args], capture_output=True, text=True, env=full, cwd=cwd, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"sme2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def sme2_here(*args: str, home=None, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`sme2 ARGS` in this process (typer's CliRunner): SME2_HOME = `home` and `env` set for the call
    only; returns what `sme2` returns (exit code, stdout, stderr)."""
    from kit.cli.main import app

    full = dict(env or {})
    if home is not None:
        full["SME2_HOME"] = str(getattr(home, "path", home))
    done = CliRunner().invoke(app, list(args), env=full, catch_exceptions=False)
    proc = subprocess.CompletedProcess(["sme2", *args], done.exit_code, done.stdout, done.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"sme2 {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
