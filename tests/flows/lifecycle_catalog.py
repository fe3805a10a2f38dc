"""A generated OpenAPI 3.1 catalog whose operations can be edited, removed and added,
shared by the lifecycle tests (fast stage-level and slow rebuild)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TITLE = "Acme Ops"
NOUNS = (
    "invoice", "customer", "shipment", "ticket", "warehouse", "payment", "refund", "coupon", "review", "driver",
    "route", "vehicle", "booking", "room", "flight", "hotel", "playlist", "track", "album", "artist",
    "recipe", "ingredient", "workout", "meal", "patient", "doctor", "lesson", "course", "exam", "grade",
    "repository", "commit", "branch", "release", "alert", "metric", "dashboard", "sensor", "device", "firmware",
)  # fmt: skip
VERBS = ("list", "create")


def operation_ids(n: int) -> list[str]:
    """The first `n` operation ids (`list_invoice`, `create_invoice`, `list_customer`, ...)."""
    return [f"{verb}_{noun}" for noun in NOUNS for verb in VERBS][:n]


def tool_id(operation_id: str) -> str:
    return f"{TITLE}&&{operation_id}"


def _operation(operation_id: str, edited: bool) -> dict[str, Any]:
    verb, noun = operation_id.split("_", 1)
    text = f"{verb.capitalize()} {noun} records of the {noun} service, filtered by {noun} status."
    if edited:
        text += f" Now also returns the {noun} audit trail and supports bulk {noun} export."
    operation: dict[str, Any] = {"operationId": operation_id, "summary": text, "tags": [noun]}
    if verb == "list":
        operation["parameters"] = [{"$ref": "#/components/parameters/limit"}]
    else:
        schema = {"$ref": "#/components/schemas/Record"}
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return operation


def spec(operations: Iterable[str], edited: Iterable[str] = ()) -> dict[str, Any]:
    """An OpenAPI 3.1 document with one path per operation (POST for create_*, GET else)."""
    changed = set(edited)
    paths = {
        f"/{op.split('_', 1)[1]}/{op.split('_', 1)[0]}": {
            ("post" if op.startswith("create") else "get"): _operation(op, op in changed)
        }
        for op in operations
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": "1.0"},
        "paths": paths,
        "components": {
            "parameters": {"limit": {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}},
            "schemas": {"Record": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}},
        },
    }


def write_spec(path: Path, operations: Iterable[str], edited: Iterable[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec(operations, edited), indent=1), encoding="utf-8")
    return path
