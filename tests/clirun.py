"""`sme2` as a user runs it, in a subprocess: the one helper every test that needs a real process
uses (a new interpreter, the console's exit code, stdout and stderr apart). Tests that only need
what a command prints use typer's CliRunner in process instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
