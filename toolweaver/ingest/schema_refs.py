"""JSON Schema handling shared by the catalog adapters (openai-tools, openapi, mcp).

Every tool keeps its arguments as one self-contained JSON Schema of `"type": "object"`,
so a later consumer (the agent's argument constraint) needs no document around it:

- `$ref`s are resolved with the `referencing` library (the resolver `jsonschema` itself
  uses) against the document they came from and inlined. Only same-document refs
  (`#/...`) are followed; a remote or file ref (`https://...`, `other.yaml#/X`) is
  refused before any lookup, and the registry's retrieve hook refuses too, so nothing
  is ever fetched or opened;
- a ref that reaches itself again (`$ref` cycle, e.g. a recursive tree schema) cannot
  be inlined and is refused; so is an inlined schema of more than `MAX_NODES` nodes
  (a "billion laughs" of nested refs);
- sibling keywords next to a `$ref` override the referenced schema's (OpenAPI 3.1 uses
  them for `description`);
- the final schema is checked against its dialect's meta-schema by `jsonschema`
  (`check_schema`): OpenAPI 3.0 schemas as draft 4 (boolean `exclusiveMinimum`),
  everything else as draft 2020-12 unless it names its own `$schema`.

Problems raise `SchemaProblem(reason, detail)`; the adapters quarantine the tool with
that reason and keep going.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

import jsonschema
import referencing.jsonschema
from jsonschema.exceptions import SchemaError
from referencing import Registry
from referencing._core import Resolver
from referencing.exceptions import Unresolvable

# Quarantine reasons (the `reason` column).
REMOTE_REF: Final = "remote_ref"
REF_CYCLE: Final = "ref_cycle"
UNRESOLVED_REF: Final = "unresolved_ref"
NON_OBJECT_SCHEMA: Final = "non_object_schema"
INVALID_SCHEMA: Final = "invalid_schema"
SCHEMA_TOO_LARGE: Final = "schema_too_large"

# Real tool schemas have tens to a few thousand nodes; this only stops blow-ups.
MAX_NODES: Final = 100_000
DOCUMENT_URI: Final = "urn:toolweaver:document"


class SchemaProblem(ValueError):
    """A tool schema that cannot be stored; `reason` is a quarantine reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _refuse_retrieval(uri: str) -> NoReturn:
    raise SchemaProblem(REMOTE_REF, f"refusing to fetch {uri!r}: only same-document $refs are resolved")


def document_resolver(document: Any) -> Resolver[Any]:
    """A resolver for the same-document refs of `document` (never retrieves anything)."""
    resource = referencing.jsonschema.DRAFT202012.create_resource(document)
    registry: Registry[Any] = Registry(retrieve=_refuse_retrieval).with_resource(DOCUMENT_URI, resource)  # type: ignore[call-arg]
    return registry.resolver(base_uri=DOCUMENT_URI)


class _Inliner:
    """Replaces every `$ref` by the schema it names (depth first, cycle-checked)."""

    def __init__(self, resolver: Resolver[Any]) -> None:
        self.resolver = resolver
        self.nodes = 0

    def inline(self, value: Any, stack: tuple[str, ...] = ()) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SchemaProblem(SCHEMA_TOO_LARGE, f"more than {MAX_NODES} nodes after resolving $refs")
        if isinstance(value, list):
            return [self.inline(item, stack) for item in value]
        if not isinstance(value, dict):
            return value
        ref = value.get("$ref")
        if ref is None:
            return {key: self.inline(item, stack) for key, item in value.items()}
        target = self.lookup(ref, stack)
        siblings = {key: self.inline(item, stack) for key, item in value.items() if key != "$ref"}
        if not isinstance(target, dict):
            if siblings:
                raise SchemaProblem(INVALID_SCHEMA, f"$ref {ref!r} names a {type(target).__name__}, not an object")
            return target
        return {**target, **siblings}

    def lookup(self, ref: Any, stack: tuple[str, ...]) -> Any:
        if not isinstance(ref, str):
            raise SchemaProblem(INVALID_SCHEMA, f"$ref must be a string, got {ref!r}")
        if not ref.startswith("#"):
            raise SchemaProblem(REMOTE_REF, f"$ref {ref!r} points outside the document; only '#/...' refs are resolved")
        if ref in stack:
            raise SchemaProblem(REF_CYCLE, " -> ".join([*stack, ref]))
        try:
            resolved = self.resolver.lookup(ref)
        except Unresolvable as err:
            raise SchemaProblem(UNRESOLVED_REF, f"$ref {ref!r} does not resolve: {err}") from err
        return self.inline(resolved.contents, (*stack, ref))


def inline_refs(value: Any, resolver: Resolver[Any]) -> Any:
    """`value` with every same-document `$ref` replaced by its target (a new object)."""
    return _Inliner(resolver).inline(value)


def follow_ref(value: Any, resolver: Resolver[Any]) -> Any:
    """`value`, or what its top-level `$ref` chain names (not inlined further: an OpenAPI
    path item whose own operations are checked one by one)."""
    seen: list[str] = []
    while isinstance(value, dict) and "$ref" in value:
        ref = value["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaProblem(REMOTE_REF, f"$ref {ref!r} points outside the document; only '#/...' refs are resolved")
        if ref in seen:
            raise SchemaProblem(REF_CYCLE, " -> ".join([*seen, ref]))
        seen.append(ref)
        try:
            value = resolver.lookup(ref).contents
        except Unresolvable as err:
            raise SchemaProblem(UNRESOLVED_REF, f"$ref {ref!r} does not resolve: {err}") from err
    return value


def object_schema(schema: Any, *, document: Any = None, draft4: bool = False) -> dict[str, Any]:
    """The self-contained, checked object schema of one tool's arguments.

    `document` is what `$ref`s are resolved against (default: the schema itself, as
    for `#/$defs/...` in an OpenAI or MCP schema).
    """
    if not isinstance(schema, dict):
        raise SchemaProblem(NON_OBJECT_SCHEMA, f"parameters must be a JSON object schema, got {type(schema).__name__}")
    resolved = inline_refs(schema, document_resolver(schema if document is None else document))
    # `$defs` / `definitions` are only ref targets: once inlined they are dead weight.
    resolved = {k: v for k, v in resolved.items() if k not in ("$defs", "definitions")}
    if resolved.get("type") != "object":
        raise SchemaProblem(NON_OBJECT_SCHEMA, f"parameters must have type 'object', got {resolved.get('type')!r}")
    check_schema(resolved, draft4=draft4)
    return resolved


def check_schema(schema: dict[str, Any], *, draft4: bool = False) -> None:
    """Raise SchemaProblem(invalid_schema) when `schema` breaks its meta-schema."""
    default = jsonschema.Draft4Validator if draft4 else jsonschema.Draft202012Validator
    validator = jsonschema.validators.validator_for(schema, default=default)
    try:
        validator.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        raise SchemaProblem(INVALID_SCHEMA, f"at {where}: {err.message}") from err
