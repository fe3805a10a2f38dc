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


def imported_modules(path: Path) -> set[str]:
    """Full dotted names of every module a Python file imports (anywhere in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# Inside `tasks/`: stage functions (and the digests both layers share) know nothing of
# the orchestrator, so they run from a notebook; the Prefect layer sits on top of them.
PREFECT_FREE = ("tasks/stages", "tasks/digests.py")


@pytest.mark.parametrize("part", PREFECT_FREE)
def test_stage_functions_are_prefect_free(part: str) -> None:
    target = ROOT / part
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files, f"{part} has no Python files"
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_modules(path))
        if name.split(".")[0] == "prefect" or name.startswith("tasks.prefect")
    ]
    assert not violations, "tasks/stages must not import the Prefect layer:\n" + "\n".join(violations)


def test_every_tasks_module_belongs_to_a_layer() -> None:
    loose = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "tasks").glob("*.py")
        if p.name != "__init__.py" and p.relative_to(ROOT).as_posix() not in PREFECT_FREE
    )
    assert not loose, f"modules outside tasks/stages and tasks/prefect: {loose}"
