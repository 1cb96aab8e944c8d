"""The shape of kit/: sub-packages in data-flow order, imports only pointing down the flow, no
cycles, no hidden function-level imports of kit modules, every module importable on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parent.parent / "kit"

# The data flow, lowest first: a package may import only from itself and the packages before it.
LAYERS = [
    "kit.core",
    "kit.models",
    "kit.devices",
    "kit.runners",
    "kit.trace",
    "kit.export",
    "kit.stats",
    "kit.counts",
    "kit.profile",
    "kit.store",
    "kit.analysis",
    "kit.report",
    "kit.pipeline",
    "kit.skills",
    "kit.agent",
    "kit.cli",
]


def modules() -> dict[str, Path]:
    out = {}
    for p in KIT.rglob("*.py"):
        parts = p.relative_to(KIT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def kit_imports(path: Path) -> list[tuple[str, bool]]:
    """(imported kit module, at module level?) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    known = modules()
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            ]
        for n in names:
            if n == "kit" or n.startswith("kit."):
                found.append((n, id(node) in top))
    return found


def layer(module: str) -> int:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    raise AssertionError(f"{module} belongs to no layer: add its package to LAYERS in data-flow order")


def test_every_package_has_a_docstring():
    for init in KIT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 30, f"{init} needs a short docstring saying the package's one job"


def test_imports_point_down_the_flow_and_are_module_level():
    problems = []
    for name, path in modules().items():
        if name == "kit":
            continue
        for imported, module_level in kit_imports(path):
            if not module_level:
                problems.append(f"{name}: function-level import of {imported}")
            if layer(imported) > layer(name):
                problems.append(f"{name} ({LAYERS[layer(name)]}) imports {imported} from a later stage")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    graph = {name: {m for m, _ in kit_imports(path)} for name, path in modules().items()}
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []
    counter = [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


# One interpreter imports the third-party packages once, then forks a child per kit module: each
# child has no kit module loaded, so a module that only imports when another kit module was imported
# first still fails, without paying torch's and Dagster's import (seconds) per module.
_IMPORT_EACH_ALONE = """
import os, sys, traceback
import numpy, pandas, duckdb, torch, dagster, typer, rich, altair, anyio, tenacity  # third-party, once
import scipy.stats, scipy.optimize, scipy.ndimage
assert not [m for m in sys.modules if m.split(".")[0] in ("kit", "sme2_assets")]
failed = 0
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(name)
        except BaseException:
            print(name + ": " + traceback.format_exc().strip().splitlines()[-1], flush=True)
            os._exit(1)
        os._exit(0)
    failed += os.waitpid(pid, 0)[1] != 0
sys.exit(1 if failed else 0)
"""


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(n for n in modules() if not n.endswith("__main__"))  # __main__ runs the CLI
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_ALONE, *names], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_test_modules_share_helpers_not_each_other():
    """Helpers live in helper modules (tests/clirun.py, runfolder.py, disks.py, ...): a test module
    importing another runs that module's fixtures and tests' imports for nothing, and couples them."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n.split(".")[:2][-1].startswith("test_") and n.startswith("tests.") for n in names):
                offenders.append(path.name)
    assert not offenders, f"test modules importing test modules: {sorted(set(offenders))}"


def test_each_sub_package_declares_its_public_modules():
    """`__all__` of every kit sub-package lists exactly its public modules (docs/kit.md: usable from
    a notebook), and `from kit.<package> import *` imports them."""
    kit = Path(__file__).resolve().parent.parent / "kit"
    for init in sorted(kit.glob("*/__init__.py")):
        package = init.parent
        declared = None
        for node in ast.parse(init.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
                declared = ast.literal_eval(node.value)
        present = {p.stem for p in package.glob("*.py") if not p.stem.startswith("_")}
        present |= {d.name for d in package.iterdir() if (d / "__init__.py").exists() and not d.name.startswith("_")}
        assert declared is not None and set(declared) == present, (package.name, declared, sorted(present))
    code = (
        "import kit.store, kit.analysis; from kit.store import *; from kit.analysis import *; print(warehouse, regress)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "kit.store.warehouse" in done.stdout, done.stderr[-2000:]
