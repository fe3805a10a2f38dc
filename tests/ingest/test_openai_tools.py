"""openai-tools adapter: a real-looking Chat Completions `tools` array (nested and flat
forms, JSON and JSON lines) lands with known ids and self-contained schemas; hostile
entries are quarantined with reasons while the good ones land."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from storage import Store
from tasks.stages.ingest import ingest
from tests.ingest.catalog_examples import OPENAI_TOOLS, write_json
from toolweaver.ingest import openai_tools

IDS = {"assistant&&get_weather", "assistant&&search_knowledge_base", "assistant&&send_email"}


def test_tools_array_lands_with_known_ids_and_inlined_schemas(tmp_path: Path) -> None:
    path = write_json(tmp_path / "assistant.json", OPENAI_TOOLS)
    store = Store(tmp_path / "store")
    summary = ingest(store, "openai-tools", path)
    assert summary["quarantine"] == {} and summary["tables"]["tools"] == 3
    rows = {r["tool_id"]: r for r in store.read("tools").to_pylist()}
    assert set(rows) == IDS
    assert {r["source"] for r in rows.values()} == {"openai-tools"}
    weather = json.loads(rows["assistant&&get_weather"]["parameters"])
    assert weather == OPENAI_TOOLS[0]["function"]["parameters"]
    search = json.loads(rows["assistant&&search_knowledge_base"]["parameters"])
    # the $ref to $defs is inlined and $defs dropped: the schema stands alone
    assert "$defs" not in search and "$ref" not in json.dumps(search)
    assert search["properties"]["options"]["properties"]["num_results"]["type"] == "number"
    assert rows["assistant&&send_email"]["description"].startswith("Send an email")
    assert rows["assistant&&get_weather"]["origin"] == "assistant.json#0"


def test_jsonl_and_saved_request_give_the_same_docs(tmp_path: Path) -> None:
    lines = tmp_path / "a" / "assistant.jsonl"
    lines.parent.mkdir()
    lines.write_text("\n".join(json.dumps(t) for t in OPENAI_TOOLS) + "\n", encoding="utf-8")
    request = write_json(tmp_path / "b" / "assistant.json", {"model": "gpt-4.1", "tools": OPENAI_TOOLS})
    from_lines = openai_tools.parse(lines)
    from_request = openai_tools.parse(request)
    assert from_lines.quarantine == [] and from_request.quarantine == []
    assert {(t.tool_id, t.doc_hash) for t in from_lines.tools} == {(t.tool_id, t.doc_hash) for t in from_request.tools}
    assert {t.origin for t in from_lines.tools} == {"assistant.jsonl#L1", "assistant.jsonl#L2", "assistant.jsonl#L3"}


def test_hostile_entries_are_quarantined_and_good_ones_land(tmp_path: Path) -> None:
    def fn(name: object, parameters: object) -> dict:
        return {"type": "function", "function": {"name": name, "description": "d", "parameters": parameters}}

    hostile = [
        *OPENAI_TOOLS,
        fn("remote", {"type": "object", "properties": {"x": {"$ref": "https://evil.example/schema.json"}}}),
        fn("file_ref", {"type": "object", "properties": {"x": {"$ref": "other.json#/defs/x"}}}),
        fn(
            "cycle",
            {"type": "object", "properties": {"n": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"$ref": "#/$defs/a"}}},
        ),
        fn("tree", {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}),
        fn(None, {"type": "object"}),
        fn("", {"type": "object"}),
        fn("string_args", {"type": "string"}),
        fn("list_args", [{"type": "object"}]),
        fn("bad_schema", {"type": "object", "properties": {"x": {"type": "strange"}}}),
        fn("dangling", {"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}),
        {"type": "code_interpreter"},
        "not an object",
    ]
    path = write_json(tmp_path / "assistant.json", hostile)
    store = Store(tmp_path / "store")
    summary = ingest(store, "openai-tools", path)
    assert set(store.read("tools").column("tool_id").to_pylist()) == IDS
    expected = {
        "remote_ref": 2,
        "ref_cycle": 2,
        "missing_name": 2,
        "non_object_schema": 2,
        "invalid_schema": 1,
        "unresolved_ref": 1,
        "not_a_function": 1,
        "wrong_type": 1,
    }
    assert summary["quarantine"] == expected
    rows = store.read("quarantine").to_pylist()
    assert Counter(r["reason"] for r in rows) == expected
    by_locator = {r["locator"]: r for r in rows}
    assert by_locator["assistant.json#3"]["reason"] == "remote_ref"
    assert "evil.example" in by_locator["assistant.json#3"]["excerpt"]
    assert by_locator["assistant.json#5"]["reason"] == "ref_cycle"
