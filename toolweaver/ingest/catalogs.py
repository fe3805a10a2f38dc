"""What the bring-your-own-catalog adapters (openai-tools, openapi, mcp) share.

- `read_catalog_files(path, result)`: (relative file, locator, value) for every JSON,
  JSON-lines or YAML document under `path` (one file or a folder, sorted), each bad
  file or line quarantined (`invalid_json`, `invalid_yaml`, `non_utf8`, ...);
- `add_tool(...)`: one tool record with its arguments as a checked, self-contained
  JSON Schema (`schema_refs.object_schema`), or a quarantine row naming why not.

Tool ids: `"<catalog>&&<name>"`. The catalog is the file stem for a tool list (OpenAI
tools, an MCP listing: the file is the catalog) and the document title for OpenAPI,
so renaming a tool-list file renames its tools (the old ids are then retired).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, Final

import yaml

from toolweaver.ingest import names
from toolweaver.ingest.docs import build_tool
from toolweaver.ingest.files import iter_files
from toolweaver.ingest.quarantine import FILE_TOO_LARGE, NON_UTF8, decode_json, decode_jsonl
from toolweaver.ingest.records import ParseResult
from toolweaver.ingest.schema_refs import SchemaProblem

INVALID_YAML: Final = "invalid_yaml"
JSON_SUFFIXES: Final = (".json", ".jsonl")
YAML_SUFFIXES: Final = (".yaml", ".yml")
YAML_MAX_BYTES: Final = 8 * 1024 * 1024  # YAML parsing is slow and alias-prone: a tighter cap


def catalog_name(rel: str) -> str:
    """The catalog a tool-list file defines: its file stem (`tools/weather.json` -> `weather`)."""
    return PurePosixPath(rel).stem


def read_catalog_files(
    path: Path, result: ParseResult, suffixes: tuple[str, ...] = JSON_SUFFIXES
) -> Iterator[tuple[str, str, Any]]:
    """(relative file, locator, document) per JSON document; a `.jsonl` file yields one per line."""
    for rel, raw in iter_files(path, suffixes=suffixes):
        result.files.add(rel)
        if rel.endswith(".jsonl"):
            for line, value in decode_jsonl(raw, rel, result):
                yield rel, f"{rel}#L{line}", value
        elif rel.endswith(YAML_SUFFIXES):
            value = decode_yaml(raw, rel, result)
            if value is not None:
                yield rel, rel, value
        else:
            value = decode_json(raw, rel, result)
            if value is not None:
                yield rel, rel, value


def decode_yaml(raw: bytes, locator: str, result: ParseResult) -> Any | None:
    """One YAML document as plain JSON values (safe loader), or None after quarantining it."""
    if len(raw) > YAML_MAX_BYTES:
        result.reject(locator, FILE_TOO_LARGE, raw[:200])
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        result.reject(locator, NON_UTF8, f"{err}: {raw[max(0, err.start - 80) : err.start + 80]!r}")
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        result.reject(locator, INVALID_YAML, str(err))
        return None
    # YAML has dates and non-string keys that JSON lacks; a JSON round trip makes the
    # document what a JSON file would have given (dates as ISO text, keys as strings).
    return json.loads(json.dumps(value, default=str))


def add_tool(
    result: ParseResult,
    locator: str,
    *,
    tool_name: Any,
    api_name: Any,
    category: str,
    description: Any,
    parameters: Callable[[], dict[str, Any]],
) -> bool:
    """Append one tool whose arguments schema `parameters()` builds; False when quarantined.

    `parameters` is a callable so that a schema problem (remote `$ref`, cycle, not an
    object) is quarantined under this tool's locator with the problem as the reason.
    """
    for name in (tool_name, api_name):
        problem = names.name_problem(name)
        if problem is not None:
            result.reject(locator, problem, {"tool_name": tool_name, "api_name": api_name})
            return False
    try:
        schema = parameters()
    except SchemaProblem as schema_problem:
        result.reject(locator, schema_problem.reason, {"name": api_name, "problem": schema_problem.detail})
        return False
    record = build_tool(
        result,
        locator,
        tool_name=tool_name,
        api_name=api_name,
        category=category,
        description=description,
        parameters=schema,
    )
    if record is None:
        return False
    result.tools.append(record)
    result.count("tools_read")
    return True
