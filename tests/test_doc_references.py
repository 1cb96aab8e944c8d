"""Every dotted `kit.` name in the docs, the README, and the kit's and the code location's
docstrings and comments resolves to a module or an attribute (a dataclass field counts): names
that moved (`kit.usersql` -> `kit.store.usersql`) are caught here, not by a reader. Fast: imports only."""

import ast
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REF = re.compile(r"(?<![\w./-])kit(?:\.[A-Za-z_][A-Za-z0-9_]*)+")


def resolves(ref: str) -> bool:
    parts = ref.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            fields = getattr(obj, "__dataclass_fields__", {})
            if hasattr(obj, name):
                obj = getattr(obj, name)
            elif name in fields:
                obj = fields[name]
            else:
                return False
        return True
    return False


def texts() -> dict[str, str]:
    out = {str(p.relative_to(REPO)): p.read_text() for p in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]}
    for p in [*(REPO / "kit").rglob("*.py"), *(REPO / "sme2_assets").rglob("*.py")]:
        source = p.read_text()
        nodes = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
        docs = [ast.get_docstring(n) or "" for n in ast.walk(ast.parse(source)) if isinstance(n, nodes)]
        comments = [line for line in source.splitlines() if line.strip().startswith("#")]
        out[str(p.relative_to(REPO))] = "\n".join(docs + comments)
    return out


def test_every_dotted_kit_reference_resolves():
    bad: dict[str, set[str]] = {}
    for where, text in texts().items():
        for match in REF.finditer(text):
            ref = match.group(0).rstrip(".")
            if not resolves(ref):
                bad.setdefault(ref, set()).add(where)
    assert not bad, "names that do not resolve (moved or renamed?):\n" + "\n".join(
        f"  {ref}  in {', '.join(sorted(where))}" for ref, where in sorted(bad.items())
    )


def test_the_resolver_catches_a_moved_name():
    assert resolves("kit.store.usersql.checked_statement") and resolves("kit.trace.etdump.Trace.rows")
    assert not resolves("kit.usersql") and not resolves("kit.store.usersql.no_such_name")
