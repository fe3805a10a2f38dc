"""Every table a stage writes has its schema declared in `storage`, so writing (and
reading back) any table works in a process that never imported a stage module."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Tables whose schema is a function of a run parameter (declared as a schema function).
SCHEMA_FUNCTIONS = {"embeddings": "embeddings_schema"}
# The store's own generic write paths (the table is a parameter).
_GENERIC = {"store.py", "checkpoints.py", "commit.py"}


def _string_constants(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Module-level NAME = "str" / NAME = ("a", "b") (annotated or not)."""
    found: dict[str, tuple[str, ...]] = {}
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not isinstance(target, ast.Name) or value is None:
            continue
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            found[target.id] = (value.value,)
        elif isinstance(value, ast.Tuple) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts
        ):
            found[target.id] = tuple(e.value for e in value.elts)  # type: ignore[attr-defined]
    return found


def _is_store_write(node: ast.Call) -> bool:
    """`.write(table, data)` or `.update(tables, compute)` (not e.g. a hash's `.update(bytes)`)."""
    attr = node.func.attr  # type: ignore[attr-defined]
    return attr == "write" or (attr == "update" and len(node.args) >= 2)


def _write_calls(tree: ast.Module) -> list[tuple[ast.Call, dict[str, str]]]:
    """Every `<x>.write(...)` and `<x>.update(tables, ...)` call with the loop variables bound around it
    (`{t: ... for t in TABLES}` -> {"t": "TABLES"})."""
    calls: list[tuple[ast.Call, dict[str, str]]] = []

    def visit(node: ast.AST, loops: dict[str, str]) -> None:
        if isinstance(node, ast.For | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            loops = dict(loops)
            heads = node.generators if not isinstance(node, ast.For) else [node]
            for head in heads:
                if isinstance(head.target, ast.Name) and isinstance(head.iter, ast.Name):
                    loops[head.target.id] = head.iter.id
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_store_write(node):
            calls.append((node, loops))
        for child in ast.iter_child_nodes(node):
            visit(child, loops)

    visit(tree, {})
    return calls


def written_tables() -> dict[str, list[str]]:
    """table -> the `file:line`s of the `<store>.write(table, ...)` calls in tasks/ and storage/."""
    files = sorted([*(ROOT / "tasks").rglob("*.py"), *(ROOT / "storage").rglob("*.py")])
    trees = {f: ast.parse(f.read_text(encoding="utf-8")) for f in files}
    constants: dict[str, tuple[str, ...]] = {}
    for tree in trees.values():
        constants |= _string_constants(tree)
    tables: dict[str, list[str]] = {}
    for path, tree in trees.items():
        # A module's own constants first (two modules may both define TABLE).
        known = constants | _string_constants(tree)
        for node, loops in _write_calls(tree):
            if not node.args:
                continue
            first, where = node.args[0], f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(first, ast.Name) and first.id in ("table", "self") and path.name in _GENERIC:
                continue  # the store's own generic write path, not a table writer
            names = _table_names(first, known, loops)
            if names is None:
                raise AssertionError(f"{where}: cannot tell which table this write targets: {ast.unparse(first)}")
            for name in names:
                tables.setdefault(name, []).append(where)
    return tables


def _table_names(node: ast.expr, known: dict[str, tuple[str, ...]], loops: dict[str, str]) -> tuple[str, ...] | None:
    """The table names an argument denotes: "t", NAME, a loop variable, or a list/tuple of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return (node.value,)
    if isinstance(node, ast.Starred):
        return _table_names(node.value, known, loops)
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.Name) and loops.get(node.id) in known:
        return known[loops[node.id]]
    if isinstance(node, ast.List | ast.Tuple):
        parts = [_table_names(e, known, loops) for e in node.elts]
        return None if any(p is None for p in parts) else tuple(n for p in parts for n in p)  # type: ignore[union-attr]
    return None


def test_the_walker_finds_the_known_writers() -> None:
    tables = written_tables()
    # Known answers: one writer of each stage.
    for table in ("tools", "qrels", "embeddings", "cousage", "codes", "sft_examples", "train_metrics", "eval_results"):
        assert table in tables, f"no writer of {table!r} found: the walker is broken"


def test_every_written_table_is_declared_in_storage_alone() -> None:
    script = (
        "import json, sys, storage\n"
        "assert not any(m == 'tasks' or m.startswith('tasks.') for m in sys.modules)\n"
        "print(json.dumps({'tables': sorted(storage.SCHEMAS), 'functions': sorted(dir(storage))}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    declared = json.loads(done.stdout)
    missing = {
        table: where
        for table, where in written_tables().items()
        if table not in declared["tables"] and SCHEMA_FUNCTIONS.get(table) not in declared["functions"]
    }
    assert not missing, f"tables written without a schema declared in storage: {missing}"


def test_each_table_has_one_owning_stage() -> None:
    """Issue 17: one stage module writes each table (codes no longer writes embeddings/cousage)."""
    owners: dict[str, set[str]] = {}
    for table, where in written_tables().items():
        stage_files = {w.split(":")[0] for w in where if w.startswith("tasks/stages/")}
        if stage_files:
            owners[table] = stage_files
    assert owners["embeddings"] == {"tasks/stages/embed.py"}
    assert owners["cousage"] == {"tasks/stages/cousage.py"}
    assert owners["codes"] == {"tasks/stages/codes.py"}
    shared = {t: sorted(f) for t, f in owners.items() if len(f) > 1}
    assert not shared, f"tables written by more than one stage module: {shared}"
