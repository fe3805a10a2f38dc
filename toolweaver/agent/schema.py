"""BFCL parameter documents -> JSON Schema, mapped once.

BFCL documents use Python type names where JSON Schema has others: `dict` -> `object`,
`float` -> `number`, `tuple` -> `array`, and `any` -> no type constraint. Only the keys
that constrain values are kept (type, properties, required, items, enum, numeric bounds,
additionalProperties when it is a schema); BFCL's extra keys (`optional`, `default`,
`format`, descriptions) say nothing a validator or a grammar can use. Schemas already in
JSON Schema pass through unchanged apart from that filter. A type name that is neither
JSON Schema nor mapped (BFCL's Java/JavaScript categories use `String`, `HashMap`, `long`…,
values BFCL passes as source text) constrains nothing, like `any`.

Generation bounds (`bound_for_generation`): a grammar alone cannot stop an untrained or
looping model from writing an endless string or array, so the schema the argument phase
compiles caps string length and array size; the cap is large enough for BFCL's answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": None}
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
_KEPT = ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems")
MAX_STRING_CHARS = 200
MAX_ARRAY_ITEMS = 16


def to_json_schema(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """A BFCL `parameters` document as a JSON Schema object schema."""
    schema = _convert(parameters or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _convert(node: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kind = node.get("type")
    kinds = [_TYPE_MAP.get(str(k), str(k)) for k in (kind if isinstance(kind, list) else [kind])]
    if kinds and all(k in JSON_TYPES for k in kinds):
        out["type"] = kinds[0] if len(kinds) == 1 else kinds
    for key in _KEPT:
        if key in node:
            out[key] = node[key]
    if "enum" in out and "type" in out and not any(_has_type(v, out["type"]) for v in out["enum"]):
        del out["type"]  # e.g. `boolean` with enum ['True', 'False']: the enum says what is meant
    properties = node.get("properties")
    if isinstance(properties, Mapping):
        out["properties"] = {
            name: _convert(sub if isinstance(sub, Mapping) else {}) for name, sub in properties.items()
        }
        required = [r for r in node.get("required") or [] if r in properties]
        if required:
            out["required"] = required
    if isinstance(node.get("items"), Mapping):
        out["items"] = _convert(node["items"])
    if isinstance(node.get("additionalProperties"), Mapping):
        out["additionalProperties"] = _convert(node["additionalProperties"])
    return out


_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def _has_type(value: Any, kinds: str | list[str]) -> bool:
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if isinstance(value, bool) and kind in ("integer", "number"):
            continue
        if isinstance(value, _PYTHON_TYPES[kind]):
            return True
    return False


def bound_for_generation(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `schema` with every string capped at MAX_STRING_CHARS and every array at
    MAX_ARRAY_ITEMS (existing tighter bounds kept), so constrained generation ends."""
    out = dict(schema)
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "string" in kinds and "enum" not in out:
        out["maxLength"] = min(int(out.get("maxLength", MAX_STRING_CHARS)), MAX_STRING_CHARS)
    if "array" in kinds:
        out["maxItems"] = min(int(out.get("maxItems", MAX_ARRAY_ITEMS)), MAX_ARRAY_ITEMS)
    if "properties" in out:
        out["properties"] = {k: bound_for_generation(v) for k, v in out["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), Mapping):
            out[key] = bound_for_generation(out[key])
    return out
