"""Real-looking public catalog examples the adapter tests build (never vendored data).

- `OPENAI_TOOLS`: a Chat Completions `tools` array in the shape of OpenAI's
  function-calling guide (get_weather, search_knowledge_base, send_email);
- `PETSTORE_31`: the OpenAPI Initiative's Petstore example grown to OpenAPI 3.1 with
  components, `$ref`ed parameters and request bodies (5 operations);
- `MCP_TOOLS_LIST`: a `tools/list` JSON-RPC response as in the MCP specification
  (2025-06-18, server/tools), three tools.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

OPENAI_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get current temperature for provided coordinates in celsius.",
            "parameters": {
                "type": "object",
                "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
                "required": ["latitude", "longitude"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_knowledge_base",
            "description": "Query a knowledge base to retrieve relevant info on a topic.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "The user question or search query."},
                    "options": {"$ref": "#/$defs/options"},
                },
                "required": ["query"],
                "$defs": {
                    "options": {
                        "type": "object",
                        "properties": {
                            "num_results": {"type": "number", "description": "Number of top results to return."},
                            "domain_filter": {"type": ["string", "null"]},
                        },
                    }
                },
            },
        },
    },
    {
        "name": "send_email",
        "description": "Send an email to a given recipient with a subject and message.",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string", "description": "The recipient email address."},
                "subject": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["to", "subject", "body"],
        },
    },
]

PETSTORE_31: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Swagger Petstore", "version": "1.0.0", "license": {"name": "MIT"}},
    "servers": [{"url": "https://petstore.example.com/v1"}],
    "paths": {
        "/pets": {
            "get": {
                "summary": "List all pets",
                "operationId": "listPets",
                "tags": ["pets"],
                "parameters": [{"$ref": "#/components/parameters/limit"}],
                "responses": {"200": {"description": "A paged array of pets"}},
            },
            "post": {
                "summary": "Create a pet",
                "operationId": "createPets",
                "tags": ["pets"],
                "requestBody": {"$ref": "#/components/requestBodies/NewPet"},
                "responses": {"201": {"description": "Null response"}},
            },
        },
        "/pets/{petId}": {
            "parameters": [
                {
                    "name": "petId",
                    "in": "path",
                    "required": True,
                    "description": "The id of the pet to retrieve",
                    "schema": {"type": "string"},
                }
            ],
            "get": {
                "summary": "Info for a specific pet",
                "operationId": "showPetById",
                "tags": ["pets"],
                "responses": {"200": {"description": "Expected response to a valid request"}},
            },
            "put": {
                "summary": "Update a pet",
                "description": "Replaces the pet's name and tag.",
                "tags": ["pets"],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
                },
                "responses": {"200": {"description": "Updated"}},
            },
        },
        "/stores/{storeId}/inventory": {
            "get": {
                "operationId": "getInventory",
                "tags": ["store"],
                "description": "Returns pet inventories by status.",
                "parameters": [
                    {"name": "storeId", "in": "path", "required": True, "schema": {"type": "integer"}},
                    {"name": "X-Request-ID", "in": "header", "schema": {"type": "string", "format": "uuid"}},
                ],
                "responses": {"200": {"description": "successful operation"}},
            }
        },
    },
    "components": {
        "parameters": {
            "limit": {
                "name": "limit",
                "in": "query",
                "description": "How many items to return at one time (max 100)",
                "required": False,
                "schema": {"type": "integer", "maximum": 100, "format": "int32"},
            }
        },
        "requestBodies": {
            "NewPet": {
                "description": "Pet to add to the store",
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
            }
        },
        "schemas": {
            "NewPet": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "tag": {"type": "string"},
                    "owner": {"$ref": "#/components/schemas/Owner"},
                },
            },
            "Owner": {
                "type": "object",
                "properties": {"id": {"type": "integer", "format": "int64"}, "email": {"type": "string"}},
            },
        },
    },
}

MCP_TOOLS_LIST: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "result": {
        "tools": [
            {
                "name": "get_weather",
                "title": "Weather Information Provider",
                "description": "Get current weather information for a location",
                "inputSchema": {
                    "type": "object",
                    "properties": {"location": {"type": "string", "description": "City name or zip code"}},
                    "required": ["location"],
                },
            },
            {
                "name": "read_file",
                "description": "Read the complete contents of a file from the file system.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}},
                    "required": ["path"],
                    "additionalProperties": False,
                    "$schema": "http://json-schema.org/draft-07/schema#",
                },
                "annotations": {"readOnlyHint": True},
            },
            {
                "name": "create_issue",
                "title": "Create a GitHub issue",
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "owner": {"type": "string"},
                        "repo": {"type": "string"},
                        "title": {"type": "string"},
                        "labels": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["owner", "repo", "title"],
                },
                "outputSchema": {"type": "object", "properties": {"number": {"type": "integer"}}},
            },
        ],
        "nextCursor": None,
    },
}


def petstore() -> dict[str, Any]:
    """A fresh deep copy (tests mutate it into hostile variants)."""
    return copy.deepcopy(PETSTORE_31)


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")
    return path
