"""The agent's tool catalog: one entry per tool with a code (what `tools.json` holds).

An entry carries everything the loop needs without the store: the code the model
emits, the function name a call uses, the documentation message shown after the code
(the trajectory stage's `tool_documentation`, so the prompt matches training), and the
JSON Schema the arguments are generated under (`schema.to_json_schema`, mapped once).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from toolweaver.agent.schema import to_json_schema
from toolweaver.align.datasets import DatasetConfig, tool_documentation

BFCL_NO_DOT_TOOL = "bfcl"  # toolweaver.ingest.bfcl.NO_DOT_TOOL: `f` is stored as tool `bfcl`, api `f`
TOOLS_JSON = "tools.json"


@dataclass(frozen=True)
class CatalogTool:
    tool_id: str
    name: str  # the function name a call uses
    code: str
    documentation: str  # the user message shown after the code
    schema: dict[str, Any]  # JSON Schema of the arguments


def call_name(tool: Mapping[str, Any]) -> str:
    """The name a call uses: BFCL's function name (`a.b.c`, or `f` for tool `bfcl`);
    other sources' tools are called by tool id."""
    if tool.get("source") == "bfcl":
        tool_name, api_name = str(tool["tool_name"]), str(tool["api_name"])
        return api_name if tool_name == BFCL_NO_DOT_TOOL else f"{tool_name}.{api_name}"
    return str(tool["tool_id"])


def build_catalog(
    tools: Iterable[Mapping[str, Any]], codes: Mapping[str, str], config: DatasetConfig | None = None
) -> list[CatalogTool]:
    """Entries for every tool row that has a code (`codes`: tool_id -> code string)."""
    config = config or DatasetConfig()
    out = []
    for tool in sorted(tools, key=lambda t: str(t["tool_id"])):
        tool_id = str(tool["tool_id"])
        if tool_id not in codes:
            continue
        parameters = _parameters(tool.get("parameters"), tool_id)
        out.append(
            CatalogTool(
                tool_id=tool_id,
                name=call_name(tool),
                code=codes[tool_id],
                documentation=tool_documentation(tool, tool_id, config.max_doc_chars),
                schema=to_json_schema(parameters),
            )
        )
    return out


def _parameters(raw: Any, tool_id: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        raise TypeError(f"tool {tool_id!r}: parameters are not a JSON object")
    return value


def write_tools_json(catalog: Sequence[CatalogTool], path: Path, *, meta: Mapping[str, Any]) -> Path:
    """`{"meta": …, "tools": {code: entry}}`, keyed by code (what the model emits)."""
    body = {"meta": dict(meta), "tools": {t.code: asdict(t) for t in catalog}}
    path.write_text(json.dumps(body, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    return path


def read_tools_json(path: Path) -> list[CatalogTool]:
    body = json.loads(path.read_text(encoding="utf-8"))
    return [CatalogTool(**entry) for entry in body["tools"].values()]
