"""SQL lives in kit/store (kit/store/__init__.py says so): analysis, reports, front ends and the code
location take frames from named store functions. A ratchet: the modules already clean stay clean,
and the SQL literals left elsewhere (listed, to be moved) may only shrink. Fast: parsing only."""

import ast
import re
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Statements as this code base writes them (keywords upper case), not prose that starts with "with".
SQL = re.compile(
    r"^\s*(SELECT\s|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?"
    r"(TABLE|VIEW|SCHEMA|INDEX)|WITH\s+\w+\s+AS\s*\(|DROP\s+(TABLE|VIEW)|ALTER\s+TABLE)"
)
# Modules with SQL literals still to move into kit/store, and how many each has now.
LEFT = {
    "kit/analysis/kernelview.py": 2,
    "kit/cli/warehouse.py": 3,
    "kit/pipeline.py": 1,
    "kit/report/figures.py": 1,
    "kit/report/hud.py": 2,
    "kit/skills/checks.py": 1,
    "kit/skills/contract.py": 1,
    "kit/skills/knowngood.py": 1,
    "sme2_assets/commands.py": 2,
}


def sql_literals(path: Path) -> int:
    n = 0
    tree = ast.parse(path.read_text())
    parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    for node in ast.walk(tree):
        if id(node) in parts:  # a piece of an f-string: the f-string counts once
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value):
            n += 1
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and SQL.match(first.value):
                n += 1
    return n


def outside_the_store() -> Counter:
    found = Counter()
    for path in [*(REPO / "kit").rglob("*.py"), *(REPO / "sme2_assets").rglob("*.py")]:
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("kit/store/"):
            continue
        n = sql_literals(path)
        if n:
            found[rel] = n
    return found


def test_sql_stays_in_the_store():
    found = outside_the_store()
    grown = {m: n for m, n in found.items() if n > LEFT.get(m, 0)}
    assert not grown, (
        f"SQL outside kit/store (move it into a named function there): {grown}; "
        f"modules allowed a shrinking number: {LEFT}"
    )
    for clean in ("kit/analysis/regress.py", "kit/report/builder.py", "kit/cli/analysis.py"):
        assert clean not in found, clean


def test_the_count_sees_sql_in_strings_and_f_strings(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('a = "SELECT 1"\nb = f"""\n  WITH x AS (SELECT {a}) SELECT 1"""\nc = "with SME2 off"\nd = "Drop it"\n')
    assert sql_literals(p) == 2
