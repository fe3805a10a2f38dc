"""Canonical tool documents: one readable text per API and its sha256.

    tool: <tool_name>
    api: <api_name>
    description: <description>
    parameters: <canonical JSON of the parameters>

The category is deliberately not part of the doc (sources disagree on it; it is a
column of its own), so the same API documented identically by two sources has the
same `doc_hash` and is embedded once.
"""

from __future__ import annotations

from typing import Any

from toolweaver.ingest import names
from toolweaver.ingest.quarantine import DOC_MAX_CHARS, DOC_TOO_LARGE, WRONG_TYPE
from toolweaver.ingest.records import ParseResult, ToolRecord, canonical_json, sha256_hex


def doc_text(tool_name: str, api_name: str, description: str, parameters_json: str) -> str:
    return f"tool: {tool_name}\napi: {api_name}\ndescription: {description}\nparameters: {parameters_json}"


def build_tool(
    result: ParseResult,
    locator: str,
    *,
    tool_name: Any,
    api_name: Any,
    category: Any,
    description: Any,
    parameters: Any,
) -> ToolRecord | None:
    """Validate one API doc and return its record, or quarantine it and return None."""
    for value in (tool_name, api_name):
        problem = names.name_problem(value)
        if problem is not None:
            result.reject(locator, problem, {"tool_name": tool_name, "api_name": api_name})
            return None
    description = "" if description is None else description
    category = "" if category is None else category
    if not isinstance(description, str) or not isinstance(category, str):
        result.reject(locator, WRONG_TYPE, {"description": description, "category": category})
        return None
    params_json = canonical_json(parameters)
    text = doc_text(tool_name, api_name, description, params_json)
    if len(text) > DOC_MAX_CHARS:
        result.reject(locator, DOC_TOO_LARGE, f"{len(text)} chars: {text[:300]}")
        return None
    return ToolRecord(
        tool_id=names.tool_id(tool_name, api_name),
        tool_name=tool_name,
        api_name=api_name,
        category=category,
        description=description,
        parameters=params_json,
        doc_text=text,
        doc_hash=sha256_hex(text),
        source=result.source,
        origin=locator,
    )
