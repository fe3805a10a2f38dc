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


# Training settings under which the tiny model really memorizes its codes (those of
# tests/flows/conftest.py::memorizing_profile).
MEMORIZING_TRAIN: dict[str, Any] = {
    "max_steps": 300,
    "batch_size": 10,
    "lr": 5e-3,
    "schedule": "constant",
    "lora_r": 8,
    "lora_alpha": 32,
    "max_grad_norm": None,
    "save_every": 100,
    "device": "cpu",
}


def save_memorizing_model(folder: Path, texts: Iterable[str]) -> Path:
    """A 64-wide 2-layer Llama (weights scaled to std 0.2) and a word-level tokenizer over
    `texts`, saved as a model folder (conftest.py::memorizing_profile's recipe)."""
    import torch

    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

    tokenizer = tiny_tokenizer(texts)
    model = tiny_llama(len(tokenizer), hidden_size=64, seed=0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.mul_(0.2 / 0.02)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def catalog_texts(n: int) -> list[str]:
    """Every text the catalog's docs can hold (all operations, edited or not)."""
    ops = operation_ids(n)
    return [json.dumps(spec(ops)), json.dumps(spec(ops, edited=ops))]
