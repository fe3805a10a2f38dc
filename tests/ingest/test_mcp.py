"""mcp adapter: a saved `tools/list` result (JSON-RPC response, bare result, pages) lands
with its `inputSchema`s as parameters; hostile tools are quarantined with reasons while
the good ones land."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from storage import Store
from tasks.stages.ingest import ingest
from tests.ingest.catalog_examples import MCP_TOOLS_LIST, write_json
from toolweaver.ingest import mcp

IDS = {"github&&get_weather", "github&&read_file", "github&&create_issue"}


def test_tools_list_response_lands_with_input_schemas(tmp_path: Path) -> None:
    path = write_json(tmp_path / "github.json", MCP_TOOLS_LIST)
    store = Store(tmp_path / "store")
    summary = ingest(store, "mcp", path)
    assert summary["quarantine"] == {} and summary["tables"]["tools"] == 3
    rows = {r["tool_id"]: r for r in store.read("tools").to_pylist()}
    assert set(rows) == IDS
    listed = {t["name"]: t for t in MCP_TOOLS_LIST["result"]["tools"]}
    for row in rows.values():
        assert json.loads(row["parameters"]) == listed[row["api_name"]]["inputSchema"]
    # no description: the title stands in for it
    assert rows["github&&create_issue"]["description"] == "Create a GitHub issue"
    assert rows["github&&get_weather"]["origin"] == "github.json#0.tools[0]"


def test_bare_result_and_pages_give_the_same_docs(tmp_path: Path) -> None:
    tools = MCP_TOOLS_LIST["result"]["tools"]
    bare = mcp.parse(write_json(tmp_path / "a" / "github.json", {"tools": tools}))
    pages = mcp.parse(
        write_json(tmp_path / "b" / "github.json", [{"tools": tools[:2], "nextCursor": "2"}, {"tools": tools[2:]}])
    )
    assert bare.quarantine == [] and pages.quarantine == []
    assert {(t.tool_id, t.doc_hash) for t in bare.tools} == {(t.tool_id, t.doc_hash) for t in pages.tools}
    assert len(pages.tools) == 3


def test_hostile_tools_are_quarantined_and_good_ones_land(tmp_path: Path) -> None:
    listing = copy.deepcopy(MCP_TOOLS_LIST)
    listing["result"]["tools"] += [
        {"name": "no_schema", "description": "inputSchema missing"},
        {"description": "no name", "inputSchema": {"type": "object"}},
        {"name": "array_schema", "inputSchema": {"type": "array"}},
        {"name": "remote", "inputSchema": {"type": "object", "properties": {"x": {"$ref": "http://evil.example/x"}}}},
        {
            "name": "loop",
            "inputSchema": {
                "type": "object",
                "$defs": {"n": {"$ref": "#/$defs/n"}},
                "properties": {"n": {"$ref": "#/$defs/n"}},
            },
        },
        {"name": "nul\u0000name", "inputSchema": {"type": "object"}},
    ]
    folder = tmp_path / "servers"
    write_json(folder / "github.json", listing)
    write_json(
        folder / "down.json", {"jsonrpc": "2.0", "id": 1, "error": {"code": -32601, "message": "Method not found"}}
    )
    write_json(folder / "odd.json", {"resources": []})
    store = Store(tmp_path / "store")
    summary = ingest(store, "mcp", folder)
    assert set(store.read("tools").column("tool_id").to_pylist()) == IDS
    assert summary["quarantine"] == {
        "missing_field": 2,
        "missing_name": 1,
        "non_object_schema": 1,
        "remote_ref": 1,
        "ref_cycle": 1,
        "nul_in_name": 1,
        "mcp_error": 1,
    }
    reasons = {r["locator"]: r for r in store.read("quarantine").to_pylist()}
    assert reasons["down.json#0"]["reason"] == "mcp_error" and "Method not found" in reasons["down.json#0"]["excerpt"]
    assert reasons["github.json#0.tools[3]"]["reason"] == "missing_field"
