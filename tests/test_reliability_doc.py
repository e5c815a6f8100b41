"""docs/reliability.md names the test that proves each guarantee: every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "reliability.md"


def _tests_by_file() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found[f"tests/{path.name}"] = {
            node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    return found


def test_every_test_the_reliability_doc_names_exists() -> None:
    text = DOC.read_text()
    tests = _tests_by_file()
    everywhere = set().union(*tests.values())
    named = 0
    default = None  # a table's header may name the file its bare test names are in
    for row in text.splitlines():
        if row.startswith("## "):
            default = None
        header = re.search(r"\(`(tests/test_\w+\.py)` unless named\)", row)
        if header:
            default = header.group(1)
            continue
        for file, name in re.findall(r"`(?:(tests/test_\w+\.py)(?:::)?)?(test_\w+)?`", row):
            if file:
                assert file in tests, f"docs/reliability.md names {file}, which does not exist"
            current = file or default
            if name:
                named += 1
                where = tests[current] if current else everywhere
                assert name in where, f"docs/reliability.md: {name} is not a test in {current or 'tests/'}"
    assert named > 40
