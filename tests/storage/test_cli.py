"""`toolweaver sql` and `toolweaver tables`: formats, --as-of, --write refusal, --store."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_store import parse_as_of
from storage import Store

from ._helpers import qrels, tools

TOOLWEAVER = Path(sys.executable).parent / "toolweaver"


@pytest.fixture()
def store_root(store_dir: Path) -> Path:
    Store(store_dir, run_id="ingest-1").write("tools", tools(3, source="toolbench"))
    later = Store(store_dir, run_id="ingest-2")
    later.write("tools", tools(5, source="toolbench"))
    later.write("qrels", qrels(["a"]))
    return store_dir


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_sql_json_answers_and_as_of(store_root: Path) -> None:
    query = "SELECT source, count(*) AS n FROM tools GROUP BY 1"
    now = invoke("sql", query, "--store", str(store_root), "--format", "json")
    assert now.exit_code == 0, now.output
    assert json.loads(now.stdout) == [{"source": "toolbench", "n": 5}]
    for as_of in (["--as-of", "tools=0"], ["--as-of", "ingest-1"]):
        old = invoke("sql", query, "--store", str(store_root), "--format", "json", *as_of)
        assert json.loads(old.stdout) == [{"source": "toolbench", "n": 3}], as_of


def test_sql_csv_and_table_formats(store_root: Path) -> None:
    query = "SELECT tool_id, category FROM tools ORDER BY tool_id LIMIT 2"
    out = invoke("sql", query, "--store", str(store_root), "--format", "csv")
    assert list(csv.reader(io.StringIO(out.stdout))) == [
        ["tool_id", "category"],
        ["tool0&&api0", ""],
        ["tool1&&api1", "cat"],
    ]
    table = invoke("sql", query, "--store", str(store_root)).stdout.splitlines()
    assert table[0].split() == ["tool_id", "category"]
    assert table[2].split() == ["tool0&&api0"] and table[3].split() == ["tool1&&api1", "cat"]
    assert table[-1] == "(2 rows)"


def test_json_output_is_strict_json(store_root: Path) -> None:
    query = "SELECT 'nan'::DOUBLE AS x, [1, 2] AS l, TIMESTAMPTZ '2024-01-02 03:04:05+00' AS t, 'é' AS s"
    out = invoke("sql", query, "--store", str(store_root), "--format", "json")
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))[0]
    assert row["x"] is None and row["l"] == [1, 2] and row["s"] == "é"
    assert row["t"].startswith("2024-01-02")


def test_tables_lists_versions_and_rows(store_root: Path) -> None:
    out = invoke("tables", "--store", str(store_root), "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == [
        {"table": "lineage", "version": 2, "rows": 3},
        {"table": "qrels", "version": 0, "rows": 1},
        {"table": "tools", "version": 1, "rows": 5},
    ]


def test_store_defaults_to_toolweaver_home(store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLWEAVER_HOME", str(store_root))
    out = invoke("sql", "SELECT count(*) AS n FROM qrels", "--format", "json")
    assert json.loads(out.stdout) == [{"n": 1}]


def test_bad_options_exit_non_zero(store_root: Path, tmp_path: Path) -> None:
    cases = [
        (["sql", "SELECT 1", "--store", str(tmp_path / "none")], "no store at"),
        (["sql", "SELECT 1", "--store", str(store_root), "--as-of", "tools=x"], "TABLE=VERSION"),
        (["sql", "SELECT 1", "--store", str(store_root), "--as-of", "r", "--as-of", "tools=1"], "mixes"),
        (["sql", "SELECT 1", "--store", str(store_root), "--as-of", "nobody"], "wrote no table version"),
        (["tables", "--store", str(tmp_path / "none")], "no store at"),
        (["sql", "SELECT * FROM nowhere", "--store", str(store_root)], "nowhere"),
    ]
    for args, message in cases:
        out = invoke(*args)
        assert out.exit_code == 1, args
        assert message in out.stderr and out.stdout == "", args


def test_parse_as_of() -> None:
    assert parse_as_of(None) is None
    assert parse_as_of(["run-7"]) == "run-7"
    assert parse_as_of(["tools=2", "qrels=0"]) == {"tools": 2, "qrels": 0}
    with pytest.raises(ValueError, match="twice"):
        parse_as_of(["tools=2", "tools=3"])


def _run(*args: str, env_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TOOLWEAVER_HOME": str(env_home)} if env_home else None
    return subprocess.run([str(TOOLWEAVER), *args], capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.skipif(not TOOLWEAVER.exists(), reason="console script not installed (run make setup)")
def test_console_script_json_is_pure_and_writes_are_refused(store_root: Path, tmp_path: Path) -> None:
    ok = _run("sql", "SELECT tool_id FROM tools ORDER BY 1", "--format", "json", env_home=store_root)
    assert ok.returncode == 0, ok.stderr
    assert [r["tool_id"] for r in json.loads(ok.stdout)] == [f"tool{i}&&api{i}" for i in range(5)]
    target = tmp_path / "dump.csv"
    refused = _run("sql", f"COPY tools TO '{target}'", "--store", str(store_root))
    assert refused.returncode != 0
    assert "COPY" in refused.stderr and "--write" in refused.stderr and refused.stdout == ""
    assert not target.exists()
    allowed = _run("sql", f"COPY tools TO '{target}'", "--store", str(store_root), "--write")
    assert allowed.returncode == 0, allowed.stderr
    assert target.exists()
