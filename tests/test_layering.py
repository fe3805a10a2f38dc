"""The dependency direction of DESIGN.md: flows -> tasks -> {toolweaver, storage}.

Checked on the source with `ast`, so an import hidden inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "toolweaver": {"prefect", "duckdb", "deltalake", "storage", "tasks", "flows"},
    "storage": {"torch", "toolweaver", "prefect", "tasks", "flows"},
    "tasks": {"flows"},
}


def imported_top_levels(path: Path) -> set[str]:
    """Top-level module names imported anywhere in a Python file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imported_top_levels_sees_nested_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from prefect import task\n    import duckdb.x\n")
    assert imported_top_levels(source) == {"os", "prefect", "duckdb"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_respects_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"package {package}/ has no Python files"
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_top_levels(path) & FORBIDDEN[package])
    ]
    assert not violations, "layering violations:\n" + "\n".join(violations)
