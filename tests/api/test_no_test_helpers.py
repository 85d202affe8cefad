"""Production code imports no test helpers (STYLE.md): the API's modules never import
`tributary.testing`, `tributary_api.testing` or anything under tests/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[2] / "services" / "api" / "src" / "tributary_api"
TEST_HELPERS = ("tributary.testing", "tributary_api.testing", "tests")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module",
    [p for p in sorted(SOURCES.glob("*.py")) if p.name != "testing.py"],
    ids=lambda p: p.name,
)
def test_production_module_imports_no_test_helper(module: Path) -> None:
    helpers = {
        name
        for name in imported_modules(module)
        if any(name == h or name.startswith(h + ".") for h in TEST_HELPERS)
    }
    assert not helpers, f"{module.name} imports {sorted(helpers)}"
