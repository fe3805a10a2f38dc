"""Issue 17 items 2-4: per-file/record isolation, BOM files, StableToolBench test_query_ids.

Each test is a reproduction that failed on f40a212: a 50,000-deep file aborted the
whole ingest with RecursionError, a BOM file was quarantined as invalid_json, and the
official test_query_ids files were quarantined as wrong_type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from storage import Store
from tasks.stages.ingest import ingest
from tests.ingest.corpus import api, tool_file, write_json
from toolweaver.ingest import isolation, stabletoolbench, toolbench
from toolweaver.ingest.records import ParseResult, QueryRecord

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SOLVABLE = DATA / "toolbench" / "stabletoolbench" / "solvable_queries"
DEPTH = 50_000


def _deep_tool_file() -> bytes:
    nested = "[" * DEPTH + "]" * DEPTH
    return ('{"tool_name": "Deep", "api_list": [{"name": "A", "required_parameters": ' + nested + "}]}").encode()


def test_a_50000_deep_file_is_quarantined_and_the_good_files_land(tmp_path: Path, store_dir: Path) -> None:
    root = tmp_path / "tools"
    write_json(root / "Finance" / "stocks.json", tool_file("Stocks", [api("Quote"), api("History")]))
    write_json(root / "Weather" / "sky.json", tool_file("Sky", [api("Now")]))
    (root / "Weather" / "deep.json").write_bytes(_deep_tool_file())
    summary = ingest(Store(store_dir), "toolbench", root)
    assert summary["quarantine"] == {"too_deep": 1}
    tools = Store(store_dir).read("tools").column("tool_id").to_pylist()
    assert sorted(tools) == ["Sky&&Now", "Stocks&&History", "Stocks&&Quote"]
    quarantined = Store(store_dir).read("quarantine").to_pylist()
    assert [(q["locator"], q["reason"]) for q in quarantined] == [("Weather/deep.json", "too_deep")]


def test_utf8_files_with_a_byte_order_mark_are_accepted(tmp_path: Path) -> None:
    root = tmp_path / "tools"
    body = json.dumps(tool_file("Bom", [api("Read")])).encode()
    (root / "Misc").mkdir(parents=True)
    (root / "Misc" / "bom.json").write_bytes(b"\xef\xbb\xbf" + body)
    (root / "Misc" / "plain.json").write_bytes(json.dumps(tool_file("Plain", [api("Read")])).encode())
    result = toolbench.parse(root)
    assert result.quarantine == []
    assert sorted(t.tool_id for t in result.tools) == ["Bom&&Read", "Plain&&Read"]


@pytest.mark.skipif(not SOLVABLE.is_dir(), reason="needs /work/shared/data (StableToolBench)")
def test_stabletoolbench_test_query_ids_are_known_metadata_not_quarantine() -> None:
    result = stabletoolbench.parse(SOLVABLE)
    assert [q for q in result.quarantine if q.reason == "wrong_type"] == []
    assert result.stats["test_query_ids_files"] == 6
    assert len({q.query_id for q in result.queries}) == 765  # all solvable queries still read


def test_a_unit_that_raises_is_rolled_back_and_quarantined() -> None:
    result = ParseResult("s")
    result.queries.append(QueryRecord("s/q/0", "0", "kept", "s", "test", "q"))
    with isolation.isolate(result, "f.json#1"):
        result.queries.append(QueryRecord("s/q/1", "1", "half-built", "s", "test", "q"))
        result.reject("f.json#1.x", "wrong_type", "partial")
        raise MemoryError("boom")
    with isolation.isolate(result, "f.json#2"):
        raise KeyError("k")
    assert [q.query_id for q in result.queries] == ["s/q/0"]
    assert [(q.locator, q.reason) for q in result.quarantine] == [
        ("f.json#1", "out_of_memory"),
        ("f.json#2", "parse_error"),
    ]
    with pytest.raises(KeyboardInterrupt), isolation.isolate(result, "f.json#3"):
        raise KeyboardInterrupt


def test_one_failing_api_does_not_drop_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tools"
    write_json(root / "Cat" / "t.json", tool_file("T", [api("Good"), api("Explodes"), api("Fine")]))
    real = toolbench.build_tool

    def flaky(result: ParseResult, loc: str, **fields: Any) -> Any:
        if fields["api_name"] == "Explodes":
            raise TypeError("unexpected type deep inside")
        return real(result, loc, **fields)

    monkeypatch.setattr(toolbench, "build_tool", flaky)
    result = toolbench.parse(root)
    assert sorted(t.api_name for t in result.tools) == ["Fine", "Good"]
    assert [(q.locator, q.reason) for q in result.quarantine] == [("Cat/t.json#api_list[1]", "parse_error")]


def test_oversized_files_are_refused_before_they_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tools"
    write_json(root / "a.json", tool_file("Small", [api("A")]))
    (root / "big.json").write_bytes(b"[" + b"0," * 600 + b"0]")
    read: list[str] = []
    real = Path.read_bytes

    def spy(self: Path) -> bytes:
        read.append(self.name)
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    result = ParseResult("s")
    files = list(isolation.read_files(root, result, max_bytes=1000))
    assert [rel for rel, _ in files] == ["a.json"]
    assert read == ["a.json"]
    assert [(q.locator, q.reason) for q in result.quarantine] == [("big.json", "file_too_large")]
    assert result.files == {"a.json", "big.json"}
