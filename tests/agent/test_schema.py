"""BFCL parameter documents -> JSON Schema: the type mapping, done once."""

from __future__ import annotations

import jsonschema

from toolweaver.agent.schema import MAX_ARRAY_ITEMS, MAX_STRING_CHARS, bound_for_generation, to_json_schema

BFCL_DOC = {
    "type": "dict",
    "properties": {
        "point": {"type": "tuple", "items": {"type": "float"}, "description": "x, y"},
        "options": {"type": "dict", "properties": {"deep": {"type": "boolean"}}, "optional": True},
        "payload": {"type": "any", "default": None},
        "unit": {"type": "string", "enum": ["m", "km"], "default": "m"},
        "flag": {"type": "boolean", "enum": ["True", "False"]},
        "legacy": {"type": "HashMap"},
    },
    "required": ["point", "missing_from_properties"],
}


def test_bfcl_types_map_to_json_schema() -> None:
    schema = to_json_schema(BFCL_DOC)
    assert schema == {
        "type": "object",
        "properties": {
            "point": {"type": "array", "items": {"type": "number"}},
            "options": {"type": "object", "properties": {"deep": {"type": "boolean"}}},
            "payload": {},
            "unit": {"type": "string", "enum": ["m", "km"]},
            "flag": {"enum": ["True", "False"]},  # a string enum under `boolean`: the enum wins
            "legacy": {},
        },
        "required": ["point"],  # a required name with no property is dropped
    }
    jsonschema.Draft202012Validator.check_schema(schema)
    ok = {"point": [1, 2.5], "payload": {"anything": [1]}, "unit": "km", "flag": "True"}
    assert jsonschema.Draft202012Validator(schema).is_valid(ok)
    for bad in ({"unit": "km"}, {"point": "1,2"}, {"point": [1], "unit": "mi"}, {"point": [1], "options": []}):
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad), bad


def test_generation_bounds_cap_strings_and_arrays_only() -> None:
    bounded = bound_for_generation(to_json_schema(BFCL_DOC))
    assert bounded["properties"]["point"]["maxItems"] == MAX_ARRAY_ITEMS
    assert "maxLength" not in bounded["properties"]["unit"]  # an enum is already bounded
    nested = bound_for_generation({"type": "array", "items": {"type": "string", "maxLength": 3}})
    assert nested["items"]["maxLength"] == 3
    assert bound_for_generation({"type": "string"})["maxLength"] == MAX_STRING_CHARS


def test_empty_or_missing_parameters_are_an_empty_object() -> None:
    assert to_json_schema(None) == {"type": "object", "properties": {}}
    assert to_json_schema({"type": "dict", "properties": {}}) == {"type": "object", "properties": {}}
