"""OpenAI function-calling tool lists (`toolweaver ingest --source openai-tools`).

Expected layout: `path` is one `.json` / `.jsonl` file or a folder of them (sorted,
recursive). A `.json` file holds a list of tools or `{"tools": [...]}` (a saved Chat
Completions request); a `.jsonl` file one tool per line. A tool is either the Chat
Completions form

    {"type": "function", "function": {"name", "description", "parameters"}}

or the flat form `{"name", "description", "parameters"}` (also with `"type":
"function"`, as the Responses API writes it). A missing `parameters` means "no
arguments" (`{"type": "object", "properties": {}}`); a present one must be an object
schema (`$ref`s to its own `$defs` are inlined, see `schema_refs`).

Mapping: tool_name = the file stem (the catalog), api_name = the function name,
category = "" (function lists have none). Locators: `file#<index>` in a list,
`file#L<line>` in JSON lines. Quarantined: entries of another `type`
(`not_a_function`), missing names, non-object or invalid schemas, remote `$ref`s, cycles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from toolweaver.ingest.catalogs import add_tool, catalog_name, read_catalog_files
from toolweaver.ingest.quarantine import WRONG_TYPE, expect
from toolweaver.ingest.records import ParseResult
from toolweaver.ingest.schema_refs import object_schema

NOT_A_FUNCTION: Final = "not_a_function"
NO_ARGUMENTS: Final = {"type": "object", "properties": {}}


def parse(path: Path, source: str = "openai-tools") -> ParseResult:
    result = ParseResult(source)
    for rel, locator, document in read_catalog_files(path, result):
        entries = [(locator, document)] if rel.endswith(".jsonl") else _entries(result, locator, document)
        for entry_locator, entry in entries:
            _parse_entry(result, entry_locator, entry, catalog=catalog_name(rel))
    return result


def _entries(result: ParseResult, locator: str, document: Any) -> list[tuple[str, Any]]:
    """The tool entries of one JSON file: a list, or the `tools` list of a saved request."""
    if isinstance(document, dict) and "tools" in document:
        document = document["tools"]
    if not expect(document, list, locator, result):
        return []
    return [(f"{locator}#{index}", entry) for index, entry in enumerate(document)]


def _parse_entry(result: ParseResult, locator: str, entry: Any, *, catalog: str) -> None:
    if not expect(entry, dict, locator, result):
        return
    kind = entry.get("type", "function")
    if kind != "function":
        result.reject(locator, NOT_A_FUNCTION, entry)
        return
    function = entry.get("function", entry)  # the Chat Completions nesting, else flat
    if not isinstance(function, dict):
        result.reject(locator, WRONG_TYPE, entry)
        return
    parameters = function.get("parameters", NO_ARGUMENTS)
    add_tool(
        result,
        locator,
        tool_name=catalog,
        api_name=function.get("name"),
        category="",
        description=function.get("description"),
        parameters=lambda: object_schema(parameters),
    )
