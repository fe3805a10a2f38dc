"""SQL surface: views, time travel (run id and TABLE=VERSION), history, write refusal."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from storage import Store, WriteRefused, connect, run_sql
from storage.sql import write_statements

from ._helpers import qrels, tools


@pytest.fixture()
def two_runs(store_dir: Path) -> Path:
    """run-1 writes tools v0 (3 rows) and qrels v0; run-2 adds tools (v1, 5 rows) and codes."""
    first = Store(store_dir, run_id="run-1")
    first.write("tools", tools(3))
    first.write("qrels", qrels(["a", "b"]))
    second = Store(store_dir, run_id="run-2")
    second.write("tools", tools(5))
    second.write("cousage", _cousage())
    return store_dir


def _cousage():
    import pyarrow as pa

    from storage import SCHEMAS

    return pa.table({"src": ["a"], "dst": ["b"], "count": [2], "weight": [1.0]}, schema=SCHEMAS["cousage"])


def _count(root: Path, table: str, **kw) -> int:
    return run_sql(root, f"SELECT count(*) AS n FROM {table}", **kw).column("n")[0].as_py()


def test_views_show_latest_versions(two_runs: Path) -> None:
    assert _count(two_runs, "tools") == 5
    assert _count(two_runs, "qrels") == 2
    got = run_sql(two_runs, "SELECT source, count(*) AS n FROM tools GROUP BY 1").to_pylist()
    assert got == [{"source": "test", "n": 5}]
    names = set(run_sql(two_runs, "SHOW TABLES").column("name").to_pylist())
    assert {"tools", "qrels", "cousage", "lineage", "history"} <= names


def test_as_of_table_version(two_runs: Path) -> None:
    assert _count(two_runs, "tools", as_of={"tools": 0}) == 3
    assert _count(two_runs, "tools", as_of={"tools": 1}) == 5
    assert _count(two_runs, "qrels", as_of={"tools": 0}) == 2  # others stay at latest
    with pytest.raises(KeyError, match=r"tools=7: table 'tools' has versions 0\.\.1"):
        run_sql(two_runs, "SELECT 1", as_of={"tools": 7})
    with pytest.raises(KeyError, match="unknown table"):
        run_sql(two_runs, "SELECT 1", as_of={"nope": 0})


def test_as_of_run_id(two_runs: Path) -> None:
    assert _count(two_runs, "tools", as_of="run-1") == 3
    assert _count(two_runs, "qrels", as_of="run-2") == 2  # written before run-2, by run-1
    assert _count(two_runs, "tools", as_of="run-2") == 5
    with pytest.raises(duckdb.CatalogException):
        run_sql(two_runs, "SELECT * FROM cousage", as_of="run-1")  # created after run-1
    with pytest.raises(KeyError, match="known runs: \\['run-1', 'run-2'\\]"):
        run_sql(two_runs, "SELECT 1", as_of="run-3")


def test_history_view_lists_every_version(two_runs: Path) -> None:
    rows = run_sql(
        two_runs,
        'SELECT "table", version, rows, run_id, mode, inputs FROM history ORDER BY 1, 2',
    ).to_pylist()
    assert [(r["table"], r["version"], r["rows"], r["run_id"], r["mode"]) for r in rows] == [
        ("cousage", 0, 1, "run-2", "overwrite"),
        ("qrels", 0, 2, "run-1", "overwrite"),
        ("tools", 0, 3, "run-1", "overwrite"),
        ("tools", 1, 5, "run-2", "overwrite"),
    ]
    digests = (
        run_sql(two_runs, 'SELECT h.digest = l.digest AS same FROM history h JOIN lineage l USING ("table", version)')
        .column("same")
        .to_pylist()
    )
    assert digests == [True] * 4


READS = [
    "SELECT 1",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "FROM tools",
    "SHOW TABLES",
    "DESCRIBE tools",
    "SUMMARIZE tools",
    "EXPLAIN SELECT * FROM tools",
    "PRAGMA table_info('tools')",
    "PRAGMA version",
]
WRITES = [
    ("INSERT INTO tools SELECT * FROM tools", "INSERT"),
    ("UPDATE t SET a = 1", "UPDATE"),
    ("DELETE FROM tools", "DELETE"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("DROP VIEW tools", "DROP"),
    ("COPY (SELECT 1) TO 'x.csv'", "COPY"),
    ("ATTACH 'x.db'", "ATTACH"),
    ("SET threads = 1", "SET"),
    ("INSTALL httpfs", "LOAD"),
    ("EXPLAIN ANALYZE DELETE FROM tools", "EXPLAIN DELETE"),
    ("PRAGMA enable_profiling", "PRAGMA enable_profiling"),
    ("CALL pragma_version()", "CALL"),
    ("EXPORT DATABASE 'dir'", "EXPORT"),
    ("SELECT 1; DROP TABLE x", "DROP"),
]


@pytest.mark.parametrize("sql", READS)
def test_read_statements_pass(sql: str) -> None:
    assert write_statements(sql) == []


@pytest.mark.parametrize(("sql", "kind"), WRITES)
def test_write_statements_are_named(sql: str, kind: str) -> None:
    found = write_statements(sql)
    assert len(found) == 1 and found[0].startswith(f"{kind}: ")


def test_run_sql_refuses_writes_before_running_anything(two_runs: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    with pytest.raises(WriteRefused, match=r"COPY: .*--write"):
        run_sql(two_runs, f"SELECT 1; COPY (SELECT * FROM tools) TO '{target}'")
    assert not target.exists()
    run_sql(two_runs, f"COPY (SELECT * FROM tools) TO '{target}' (HEADER)", write=True)
    assert len(target.read_text().splitlines()) == 6
    assert run_sql(
        two_runs, "CREATE TEMP TABLE t AS SELECT 41 AS x; SELECT x + 1 AS y FROM t", write=True
    ).to_pylist() == [{"y": 42}]
    assert _count(two_runs, "tools") == 5  # the store is unchanged


def test_read_only_connection_has_no_file_access(two_runs: Path, tmp_path: Path) -> None:
    con = connect(two_runs)
    with pytest.raises(duckdb.PermissionException):
        con.execute(f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'")
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    assert con.execute("SELECT count(*) FROM qrels").fetchone() == (2,)
    with pytest.raises(duckdb.Error):
        con.execute("INSERT INTO qrels SELECT * FROM qrels")
    assert not (tmp_path / "x.csv").exists()


def test_connect_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no store at"):
        connect(tmp_path / "absent")


def test_appended_rows_keep_write_order(store_dir: Path) -> None:
    store = Store(store_dir)
    for batch in (["a", "b"], ["c"], ["d", "e"]):
        store.write("qrels", qrels(batch), mode="append")
    assert run_sql(store_dir, "SELECT query_id FROM qrels").column(0).to_pylist() == list("abcde")
    assert store.read("qrels").column("query_id").to_pylist() == list("abcde")
