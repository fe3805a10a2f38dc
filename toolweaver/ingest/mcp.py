"""Saved MCP `tools/list` results (`toolweaver ingest --source mcp`); no live connection.

Expected layout: `path` is one `.json` file or a folder of them (sorted, recursive),
each the result of one `tools/list` call of one MCP server, as the bare result
`{"tools": [...], "nextCursor"?}`, the whole JSON-RPC response
`{"jsonrpc": "2.0", "id": ..., "result": {"tools": [...]}}`, or a list of such
results (the pages of a paginated listing). A tool is

    {"name", "title"?, "description"?, "inputSchema": {"type": "object", ...},
     "outputSchema"?, "annotations"?}

(MCP specification 2025-06-18, `Tool`). `inputSchema` is required and must be an object
schema; it is stored as the tool's parameters. Mapping: tool_name = the file stem (one
file per server), api_name = `name`, description = `description` (else `title`,
else `annotations.title`), category = "". Locator `file#<page>.tools[<index>]`.
A JSON-RPC error response is quarantined (`mcp_error`) with its message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from toolweaver.ingest.catalogs import add_tool, catalog_name, read_catalog_files
from toolweaver.ingest.quarantine import MISSING_FIELD, expect
from toolweaver.ingest.records import ParseResult
from toolweaver.ingest.schema_refs import object_schema

MCP_ERROR: Final = "mcp_error"


def parse(path: Path, source: str = "mcp") -> ParseResult:
    result = ParseResult(source)
    for rel, locator, document in read_catalog_files(path, result, suffixes=(".json",)):
        pages = document if isinstance(document, list) else [document]
        for page_index, page in enumerate(pages):
            tools = _page_tools(result, f"{locator}#{page_index}", page)
            for index, tool in enumerate(tools):
                _parse_tool(result, f"{locator}#{page_index}.tools[{index}]", tool, catalog=catalog_name(rel))
    return result


def _page_tools(result: ParseResult, locator: str, page: Any) -> list[Any]:
    """The `tools` list of one listing page (bare result or JSON-RPC response)."""
    if not expect(page, dict, locator, result):
        return []
    if "error" in page:
        result.reject(locator, MCP_ERROR, page["error"])
        return []
    body = page.get("result", page) if "jsonrpc" in page else page
    if not isinstance(body, dict) or "tools" not in body:
        result.reject(locator, MISSING_FIELD, {"expected": "tools", "got": page})
        return []
    tools = body["tools"]
    return tools if expect(tools, list, f"{locator}.tools", result) else []


def _parse_tool(result: ParseResult, locator: str, tool: Any, *, catalog: str) -> None:
    if not expect(tool, dict, locator, result):
        return
    if "inputSchema" not in tool:
        result.reject(locator, MISSING_FIELD, {"expected": "inputSchema", "got": tool})
        return
    annotations = tool.get("annotations") if isinstance(tool.get("annotations"), dict) else {}
    description = tool.get("description") or tool.get("title") or annotations.get("title")
    add_tool(
        result,
        locator,
        tool_name=catalog,
        api_name=tool.get("name"),
        category="",
        description=description,
        parameters=lambda: object_schema(tool["inputSchema"]),
    )
