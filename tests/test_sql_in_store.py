"""SQL lives in kit/store (kit/store/__init__.py says so): analysis, reports, front ends and the code
location take frames from named store functions: no SQL statement literal anywhere else in kit/ or
sme2_assets/ (user SQL arrives as text and goes through kit/store/usersql.py). Fast: parsing only."""

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
    assert not found, f"SQL outside kit/store (move it into a named function there): {dict(found)}"


def test_the_count_sees_sql_in_strings_and_f_strings(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('a = "SELECT 1"\nb = f"""\n  WITH x AS (SELECT {a}) SELECT 1"""\nc = "with SME2 off"\nd = "Drop it"\n')
    assert sql_literals(p) == 2
