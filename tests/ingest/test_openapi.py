"""openapi adapter: an OpenAPI 3.1 Petstore with components, `$ref`ed parameters and
request bodies (JSON and YAML) gives one tool per operation with one resolved JSON
Schema each; remote refs, cycles, missing names, non-object schemas and non-3.x
documents are quarantined while good operations land."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from storage import Store
from tasks.stages.ingest import ingest
from tests.ingest.catalog_examples import petstore, write_json
from toolweaver.ingest import openapi

TITLE = "Swagger Petstore"
OPERATIONS = {"listPets", "createPets", "showPetById", "PUT /pets/{petId}", "getInventory"}


def params(store: Store) -> dict[str, dict]:
    rows = store.read("tools").to_pylist()
    return {r["api_name"]: json.loads(r["parameters"]) for r in rows}


def test_petstore_gives_one_tool_per_operation_with_resolved_schemas(tmp_path: Path) -> None:
    path = write_json(tmp_path / "petstore.json", petstore())
    store = Store(tmp_path / "store")
    summary = ingest(store, "openapi", path)
    assert summary["quarantine"] == {} and summary["tables"]["tools"] == 5
    rows = {r["api_name"]: r for r in store.read("tools").to_pylist()}
    assert set(rows) == OPERATIONS
    assert {r["tool_id"] for r in rows.values()} == {f"{TITLE}&&{op}" for op in OPERATIONS}
    assert rows["listPets"]["category"] == "pets" and rows["getInventory"]["category"] == "store"
    assert rows["PUT /pets/{petId}"]["description"] == "Update a pet\nReplaces the pet's name and tag."
    assert rows["createPets"]["origin"] == "petstore.json#/paths/~1pets/post"
    schemas = params(store)
    assert schemas["listPets"] == {
        "type": "object",
        "properties": {
            "limit": {
                "type": "integer",
                "maximum": 100,
                "format": "int32",
                "description": "How many items to return at one time (max 100)",
            }
        },
    }
    body = schemas["createPets"]["properties"]["body"]
    assert schemas["createPets"]["required"] == ["body"] and body["description"] == "Pet to add to the store"
    assert body["properties"]["owner"]["properties"]["email"] == {"type": "string"}  # nested $ref inlined
    # the path item's parameter reaches both of its operations; path parameters are required
    assert schemas["showPetById"]["required"] == ["petId"]
    assert schemas["PUT /pets/{petId}"]["required"] == ["petId", "body"]
    assert schemas["getInventory"]["required"] == ["storeId"]
    assert set(schemas["getInventory"]["properties"]) == {"storeId", "X-Request-ID"}
    assert all("$ref" not in json.dumps(s) for s in schemas.values())
    # the stored schema is usable as is: it validates real arguments
    jsonschema.validate({"petId": "7", "body": {"name": "Rex", "owner": {"id": 1}}}, schemas["PUT /pets/{petId}"])


def test_yaml_folder_equals_json(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "petstore.yaml").write_text(yaml.safe_dump(petstore()), encoding="utf-8")
    from_yaml = openapi.parse(folder)
    from_json = openapi.parse(write_json(tmp_path / "petstore.json", petstore()))
    assert from_yaml.quarantine == []
    assert sorted((t.tool_id, t.doc_hash) for t in from_yaml.tools) == sorted(
        (t.tool_id, t.doc_hash) for t in from_json.tools
    )


def test_openapi_30_is_checked_as_draft4(tmp_path: Path) -> None:
    spec = petstore()
    spec["openapi"] = "3.0.3"
    limit = spec["components"]["parameters"]["limit"]["schema"]
    limit.update(minimum=0, exclusiveMinimum=True, nullable=True)  # 3.0 spellings
    result = openapi.parse(write_json(tmp_path / "petstore.json", spec))
    assert result.quarantine == [] and len(result.tools) == 5


def hostile_spec() -> dict:
    spec = petstore()
    paths = spec["paths"]
    paths["/remote"] = {"get": {"operationId": "remote", "parameters": [{"$ref": "https://evil.example/p.json"}]}}
    paths["/cycle"] = {"post": {"operationId": "cycle", "requestBody": {"$ref": "#/components/requestBodies/Loop"}}}
    spec["components"]["requestBodies"]["Loop"] = {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/A"}}}
    }
    spec["components"]["schemas"]["A"] = {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}}
    spec["components"]["schemas"]["B"] = {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}}
    paths["/noname"] = {"get": {"operationId": "", "responses": {}}}
    paths["/unnamed-param"] = {"get": {"operationId": "unnamedParam", "parameters": [{"in": "query"}]}}
    paths["/clash"] = {
        "get": {
            "operationId": "clash",
            "parameters": [
                {"name": "id", "in": "query", "schema": {"type": "string"}},
                {"name": "id", "in": "header", "schema": {"type": "string"}},
            ],
        }
    }
    paths["/bad-type"] = {
        "get": {"operationId": "badType", "parameters": [{"name": "q", "in": "query", "schema": {"type": 5}}]}
    }
    paths["/not-an-operation"] = {"get": "nope"}
    return spec


def test_hostile_operations_are_quarantined_and_good_ones_land(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    write_json(folder / "petstore.json", hostile_spec())
    write_json(folder / "swagger.json", {"swagger": "2.0", "info": {"title": "old"}, "paths": {}})
    write_json(folder / "package.json", {"name": "not-a-spec"})
    (folder / "broken.yaml").write_text("openapi: 3.1.0\npaths: [unclosed\n", encoding="utf-8")
    store = Store(tmp_path / "store")
    summary = ingest(store, "openapi", folder)
    assert {r["api_name"] for r in store.read("tools").to_pylist()} == OPERATIONS
    assert summary["quarantine"] == {
        "remote_ref": 1,
        "ref_cycle": 1,
        "missing_name": 1,
        "missing_field": 1,
        "parameter_clash": 1,
        "invalid_schema": 1,
        "wrong_type": 1,
        "unsupported_openapi_version": 1,
        "not_openapi": 1,
        "invalid_yaml": 1,
    }
    reasons = {r["locator"]: r["reason"] for r in store.read("quarantine").to_pylist()}
    assert reasons["petstore.json#/paths/~1remote/get"] == "remote_ref"
    assert reasons["petstore.json#/paths/~1cycle/post"] == "ref_cycle"
    assert reasons["swagger.json"] == "unsupported_openapi_version"


def test_a_non_object_body_is_wrapped_and_a_non_object_document_quarantined(tmp_path: Path) -> None:
    spec = petstore()
    spec["paths"]["/tags"] = {
        "post": {
            "operationId": "addTags",
            "requestBody": {
                "content": {"application/json": {"schema": {"type": "array", "items": {"type": "string"}}}}
            },
        }
    }
    write_json(tmp_path / "s" / "petstore.json", spec)
    write_json(tmp_path / "s" / "list.json", [1, 2])
    result = openapi.parse(tmp_path / "s")
    schema = json.loads(next(t.parameters for t in result.tools if t.api_name == "addTags"))
    assert schema["type"] == "object" and schema["properties"]["body"]["type"] == "array"
    assert [(q.locator, q.reason) for q in result.quarantine] == [("list.json", "wrong_type")]
