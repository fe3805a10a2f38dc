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
looping model from writing an endless string, number or array (a greedy untrained model
wrote `6999…3131…` until the token budget ran out), so the schema the argument phase
compiles caps string length, array size and the range of numbers (which also bounds
their digits), and an unconstrained value (`any`) becomes a scalar or an array of
scalars; the caps are far above BFCL's answers. Validation uses the unbounded schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TYPE_MAP = {"dict": "object", "float": "number", "tuple": "array", "any": None}
JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})
_KEPT = ("enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems")
MAX_STRING_CHARS = 200
MAX_ARRAY_ITEMS = 16
MAX_ABS_NUMBER = 10**15


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
    """A copy of `schema` with every string capped at MAX_STRING_CHARS, every array at
    MAX_ARRAY_ITEMS, every number within ±MAX_ABS_NUMBER (tighter bounds kept) and every
    unconstrained value a bounded scalar or array of scalars, so constrained generation ends."""
    if not schema or set(schema) <= {"description"}:
        return _bounded_any()
    out = dict(schema)
    kinds = out.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "enum" not in out:
        if "string" in kinds:
            out["maxLength"] = min(int(out.get("maxLength", MAX_STRING_CHARS)), MAX_STRING_CHARS)
        if "integer" in kinds or "number" in kinds:
            out["minimum"] = max(out.get("minimum", -MAX_ABS_NUMBER), -MAX_ABS_NUMBER)
            out["maximum"] = min(out.get("maximum", MAX_ABS_NUMBER), MAX_ABS_NUMBER)
    if "array" in kinds:
        out["maxItems"] = min(int(out.get("maxItems", MAX_ARRAY_ITEMS)), MAX_ARRAY_ITEMS)
        out["items"] = bound_for_generation(out.get("items") or {})
    if "properties" in out:
        out["properties"] = {k: bound_for_generation(v) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), Mapping):
        out["additionalProperties"] = bound_for_generation(out["additionalProperties"])
    for key in ("anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [bound_for_generation(option) for option in out[key]]
    return out


def _bounded_any() -> dict[str, Any]:
    scalars: list[dict[str, Any]] = [
        {"type": "string", "maxLength": MAX_STRING_CHARS},
        {"type": "number", "minimum": -MAX_ABS_NUMBER, "maximum": MAX_ABS_NUMBER},
        {"type": "boolean"},
        {"type": "null"},
    ]
    return {"anyOf": [*scalars, {"type": "array", "items": {"anyOf": scalars}, "maxItems": MAX_ARRAY_ITEMS}]}
