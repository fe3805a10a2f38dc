"""OpenAPI 3.0 / 3.1 documents (`toolweaver ingest --source openapi`), one tool per operation.

Expected layout: `path` is one `.json` / `.yaml` / `.yml` file or a folder of them
(sorted, recursive), each one OpenAPI document (`openapi: 3.0.x` or `3.1.x`; Swagger
2.0 is quarantined as `unsupported_openapi_version`, a document without `openapi` as
`not_openapi`).

Mapping, per operation (`paths.<path>.<method>`):

- tool_name = `info.title` (else the file stem), api_name = `operationId`, else
  `"<METHOD> <path>"` (e.g. `GET /pets/{petId}`); category = the first tag;
  description = summary and description, one per line;
- parameters = one JSON Schema object: every path-item and operation parameter
  (`in` path/query/header/cookie; an operation's entry overrides the path item's of the
  same name and `in`) becomes a property with its schema (or the schema of its one
  `content` entry) and its description; path parameters and `required: true` ones are
  `required`; a request body becomes the property `body` (the `application/json` schema,
  else the first media type's), required when the body is. Two parameters of one name
  in different places are quarantined (`parameter_clash`).

`$ref`s (to components, parameters, request bodies, path items) are resolved with the
`referencing` library against the same document (`schema_refs`); remote refs, cycles
and invalid schemas quarantine the operation (locator `file#/paths/<path>/<method>`, a
JSON pointer) while the document's other operations land. OpenAPI 3.0 schemas are
checked as JSON Schema draft 4, 3.1 schemas as draft 2020-12.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from referencing._core import Resolver

from toolweaver.ingest.catalogs import YAML_SUFFIXES, add_tool, catalog_name, read_catalog_files
from toolweaver.ingest.quarantine import MISSING_FIELD, expect
from toolweaver.ingest.records import ParseResult
from toolweaver.ingest.schema_refs import (
    INVALID_SCHEMA,
    SchemaProblem,
    document_resolver,
    follow_ref,
    inline_refs,
    object_schema,
)

NOT_OPENAPI: Final = "not_openapi"
UNSUPPORTED_VERSION: Final = "unsupported_openapi_version"
PARAMETER_CLASH: Final = "parameter_clash"
METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
BODY: Final = "body"


def parse(path: Path, source: str = "openapi") -> ParseResult:
    result = ParseResult(source)
    for rel, locator, document in read_catalog_files(path, result, suffixes=(".json", *YAML_SUFFIXES)):
        if _is_supported(result, locator, document):
            _parse_document(result, rel, document)
    return result


def _is_supported(result: ParseResult, locator: str, document: Any) -> bool:
    if not expect(document, dict, locator, result):
        return False
    version = document.get("openapi")
    if version is None:
        reason = UNSUPPORTED_VERSION if "swagger" in document else NOT_OPENAPI
        result.reject(locator, reason, {k: document[k] for k in ("swagger", "info") if k in document})
        return False
    if not isinstance(version, str) or not version.startswith(("3.0", "3.1")):
        result.reject(locator, UNSUPPORTED_VERSION, {"openapi": version})
        return False
    return expect(document.get("paths", {}), dict, f"{locator}#/paths", result)


def _parse_document(result: ParseResult, rel: str, document: dict[str, Any]) -> None:
    resolver = document_resolver(document)
    info = document.get("info")
    given = info.get("title") if isinstance(info, dict) else None
    title = given if isinstance(given, str) and given.strip() else catalog_name(rel)
    draft4 = document["openapi"].startswith("3.0")
    for route, item in document.get("paths", {}).items():
        item_locator = f"{rel}#/paths/{_pointer(route)}"
        try:
            item = follow_ref(item, resolver)  # a path item may itself be a $ref
        except SchemaProblem as problem:
            result.reject(item_locator, problem.reason, problem.detail)
            continue
        if not expect(item, dict, item_locator, result):
            continue
        for method in (m for m in METHODS if m in item):
            operation = item[method]
            if expect(operation, dict, f"{item_locator}/{method}", result):
                result.count("operations_read")
                _add_operation(
                    result, f"{item_locator}/{method}", title, route, method, item, operation, resolver, draft4
                )


def _add_operation(
    result: ParseResult,
    locator: str,
    title: str,
    route: str,
    method: str,
    item: dict[str, Any],
    operation: dict[str, Any],
    resolver: Resolver[Any],
    draft4: bool,
) -> None:
    operation_id = operation.get("operationId")
    tags = operation.get("tags")
    texts = [operation.get(k) for k in ("summary", "description")]
    add_tool(
        result,
        locator,
        tool_name=title,
        api_name=operation_id if operation_id is not None else f"{method.upper()} {route}",
        category=tags[0] if isinstance(tags, list) and tags and isinstance(tags[0], str) else "",
        description="\n".join(t.strip() for t in texts if isinstance(t, str) and t.strip()),
        parameters=lambda: _arguments_schema(item, operation, resolver, draft4),
    )


def _arguments_schema(
    item: dict[str, Any], operation: dict[str, Any], resolver: Resolver[Any], draft4: bool
) -> dict[str, Any]:
    """The operation's parameters and request body as one object schema (refs inlined)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in _parameters(item, operation, resolver):
        name = parameter["name"]
        if name in properties:
            raise SchemaProblem(PARAMETER_CLASH, f"parameter {name!r} appears in more than one place")
        properties[name] = _described(_parameter_schema(parameter), parameter.get("description"))
        if parameter.get("in") == "path" or parameter.get("required") is True:
            required.append(name)
    body = inline_refs(operation.get("requestBody"), resolver)
    if body is not None:
        if BODY in properties:
            raise SchemaProblem(PARAMETER_CLASH, f"a parameter is named {BODY!r} and the operation has a body")
        properties[BODY] = _described(_body_schema(body), body.get("description"))
        if body.get("required") is True:
            required.append(BODY)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return object_schema(schema, draft4=draft4)


def _parameters(item: dict[str, Any], operation: dict[str, Any], resolver: Resolver[Any]) -> list[dict[str, Any]]:
    """Path-item then operation parameters, refs inlined; the operation's win per (name, in)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for owner in (item, operation):
        listed = inline_refs(owner.get("parameters", []), resolver)
        if not isinstance(listed, list):
            raise SchemaProblem(INVALID_SCHEMA, f"parameters must be a list, got {type(listed).__name__}")
        for parameter in listed:
            if not (isinstance(parameter, dict) and isinstance(parameter.get("name"), str)):
                raise SchemaProblem(MISSING_FIELD, f"a parameter without a name: {parameter!r}"[:300])
            merged[(parameter["name"], str(parameter.get("in")))] = parameter
    return list(merged.values())


def _parameter_schema(parameter: dict[str, Any]) -> Any:
    if "schema" in parameter:
        return parameter["schema"]
    return _content_schema(parameter.get("content"), f"parameter {parameter['name']!r}")


def _body_schema(body: Any) -> Any:
    if not isinstance(body, dict):
        raise SchemaProblem(INVALID_SCHEMA, f"requestBody must be an object, got {type(body).__name__}")
    return _content_schema(body.get("content"), "requestBody")


def _content_schema(content: Any, what: str) -> Any:
    """The schema of `application/json` in a content map, else of its first media type."""
    if not isinstance(content, dict) or not content:
        raise SchemaProblem(MISSING_FIELD, f"{what} has neither a schema nor a content map")
    media = content.get("application/json", next(iter(content.values())))
    if not isinstance(media, dict):
        raise SchemaProblem(INVALID_SCHEMA, f"{what}: media type object must be an object")
    return media.get("schema", {})


def _described(schema: Any, description: Any) -> Any:
    """`schema` with the parameter's description when the schema has none of its own."""
    if isinstance(schema, dict) and isinstance(description, str) and "description" not in schema:
        return {**schema, "description": description}
    return schema


def _pointer(segment: str) -> str:
    """A JSON-pointer path segment (RFC 6901: `~` -> `~0`, `/` -> `~1`)."""
    return segment.replace("~", "~0").replace("/", "~1")
