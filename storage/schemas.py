"""Arrow schemas of every artifact table, declared once (see docs/tables.md).

The ingest tables are declared here, the tables of the later stages in
`storage.schemas_pipeline`; `SCHEMAS` holds both, so writing any table needs no stage
module. `register_schema(name, schema)` adds a table for code outside the pipeline
(tests, user extensions). Tables whose shape depends on a run parameter (the embedding width) have a schema
function instead (`embeddings_schema(dim)`); `Store.write` resolves those with
`schema_for(table, data)`.
"""

from __future__ import annotations

import re

import pyarrow as pa

from storage.schemas_pipeline import PIPELINE_SCHEMAS

# Table names become folder names and SQL view names: keep them plain identifiers.
TABLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Names the SQL surface uses for its own views.
RESERVED_NAMES = frozenset({"history"})


class SchemaError(ValueError):
    """Data does not fit the declared schema of its table (the message names the column)."""


def _f(name: str, typ: pa.DataType, nullable: bool = True) -> pa.Field:
    return pa.field(name, typ, nullable=nullable)


_STR = pa.string()
_UTC_US = pa.timestamp("us", tz="UTC")

_TOOL_FIELDS = [
    _f("tool_id", _STR, False),  # "<tool_name>&&<api_name>", raw names
    _f("tool_name", _STR, False),
    _f("api_name", _STR, False),
    _f("category", _STR),
    _f("description", _STR),
    _f("parameters", _STR),  # JSON text
    _f("doc_text", _STR),
    _f("doc_hash", _STR, False),  # sha256 of the canonical doc
    _f("source", _STR, False),
    _f("origin", _STR),  # file / record locator
]

SCHEMAS: dict[str, pa.Schema] = {
    "tools": pa.schema(_TOOL_FIELDS),
    "tool_doc_variants": pa.schema([*_TOOL_FIELDS, _f("reason", _STR, False)]),
    "queries": pa.schema(
        [
            _f("query_id", _STR, False),  # <source>/<group or split>/<raw id>
            _f("raw_id", _STR),
            _f("text", _STR),
            _f("source", _STR, False),
            _f("split", _STR),
            _f("query_group", _STR),
        ]
    ),
    "qrels": pa.schema(
        [
            _f("query_id", _STR, False),
            _f("tool_id", _STR, False),
            _f("relevance", pa.int32(), False),
            _f("source", _STR, False),
        ]
    ),
    "trajectories": pa.schema(
        [
            _f("trajectory_id", _STR, False),
            _f("query_id", _STR),
            _f("messages", _STR),  # JSON text
            _f("tool_ids", pa.list_(_STR)),  # call order
            _f("source", _STR, False),
        ]
    ),
    "quarantine": pa.schema(
        [
            _f("source", _STR, False),
            _f("locator", _STR, False),  # file or file#record
            _f("reason", _STR, False),
            _f("excerpt", _STR),  # <= 500 chars
        ]
    ),
    # Append-only log of catalog changes (tasks/stages/lifecycle.py): a retired tool is
    # a row here, never a deletion; its latest event says whether it is active.
    "tool_events": pa.schema(
        [
            _f("tool_id", _STR, False),
            _f("event", _STR, False),  # added | changed | retired | restored
            _f("source", _STR, False),  # the ingest that observed it
            _f("old_doc_hash", _STR),  # null for added
            _f("new_doc_hash", _STR),  # null for retired
            _f("reason", _STR, False),
            _f("ingested_path", _STR),
            _f("run_id", _STR),
            _f("recorded_at", _UTC_US, False),
        ]
    ),
    "lineage": pa.schema(
        [
            _f("table", _STR, False),
            _f("version", pa.int64(), False),
            _f("digest", _STR, False),
            _f("rows", pa.int64(), False),
            _f("run_id", _STR),
            _f("code_version", _STR),
            _f("config_hash", _STR),
            _f("inputs", _STR),  # JSON list of [table, version]
            _f("written_at", _UTC_US, False),
        ]
    ),
    "checkpoints": pa.schema(
        [
            _f("checkpoint_id", _STR, False),
            _f("kind", _STR, False),
            _f("path", _STR, False),  # relative to the store root
            _f("run_id", _STR),
            _f("config_hash", _STR),
            _f("meta", _STR),  # JSON
            _f("created_at", _UTC_US, False),
        ]
    ),
    "cousage": pa.schema(
        [
            _f("src", _STR, False),  # tool_id, src < dst
            _f("dst", _STR, False),
            _f("count", pa.int64(), False),
            _f("weight", pa.float64(), False),  # C_uv / sqrt(C_uu C_vv)
        ]
    ),
    "codes": pa.schema(
        [
            _f("tool_id", _STR, False),
            _f("levels", pa.list_(pa.int32()), False),
            _f("code", _STR, False),  # "<a_12><b_45>"
            _f("codes_version", _STR),
        ]
    ),
}
SCHEMAS.update(PIPELINE_SCHEMAS)


def embeddings_schema(dim: int) -> pa.Schema:
    """Schema of the `embeddings` table for vectors of width `dim` (FixedSizeList<float32, dim>)."""
    if dim <= 0:
        raise ValueError(f"embedding dim must be positive, got {dim}")
    return pa.schema(
        [
            _f("doc_hash", _STR, False),
            _f("model_id", _STR, False),
            _f("embedding", pa.list_(pa.float32(), dim), False),
        ]
    )


def check_table_name(name: str) -> str:
    """Return `name` if it is a valid table name, else raise ValueError saying why."""
    if not TABLE_NAME_RE.match(name):
        raise ValueError(
            f"invalid table name {name!r}: use lower-case letters, digits and '_', "
            "starting with a letter (at most 63 characters)"
        )
    if name in RESERVED_NAMES:
        raise ValueError(f"table name {name!r} is reserved for a SQL view; pick another name")
    return name


def register_schema(name: str, schema: pa.Schema, *, replace: bool = False) -> pa.Schema:
    """Declare the schema of table `name` (idempotent for an identical schema).

    Raises ValueError when `name` already has a different schema, unless `replace=True`.
    """
    check_table_name(name)
    if not isinstance(schema, pa.Schema):
        raise TypeError(f"schema for {name!r} must be a pyarrow.Schema, got {type(schema).__name__}")
    current = SCHEMAS.get(name)
    if current is not None and not current.equals(schema) and not replace:
        raise ValueError(
            f"table {name!r} already has a different schema:\n{current}\npass replace=True to redeclare it"
        )
    SCHEMAS[name] = schema
    return schema


def schema_for(table: str, data: pa.Table) -> pa.Schema:
    """The declared schema of `table`; for `embeddings`, the width comes from the data."""
    if table in SCHEMAS:
        return SCHEMAS[table]
    if table == "embeddings":
        return embeddings_schema(_embedding_dim(data))
    raise SchemaError(
        f"table {table!r} has no declared schema: call storage.register_schema({table!r}, schema) "
        "or pass schema= to Store.write"
    )


def _embedding_dim(data: pa.Table) -> int:
    if "embedding" not in data.column_names:
        raise SchemaError("table 'embeddings': missing column 'embedding'")
    typ = data.schema.field("embedding").type
    if pa.types.is_fixed_size_list(typ):
        return typ.list_size
    raise SchemaError(
        f"table 'embeddings': column 'embedding' has type {typ}; give a FixedSizeList<float32, D> "
        "column or pass schema=embeddings_schema(D)"
    )


def conform(table: str, data: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast `data` to `schema` (columns reordered to the schema); raise SchemaError naming the column.

    Missing and unexpected columns, failed (unsafe) casts and nulls in non-nullable
    columns are all errors: nothing is filled in or dropped silently.
    """
    if not isinstance(data, pa.Table):
        raise TypeError(f"table {table!r}: data must be a pyarrow.Table, got {type(data).__name__}")
    names = data.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise SchemaError(f"table {table!r}: duplicated column(s) {duplicated}")
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise SchemaError(f"table {table!r}: missing column(s) {missing}; expected {schema.names}")
    extra = [n for n in names if n not in schema.names]
    if extra:
        raise SchemaError(f"table {table!r}: unexpected column(s) {extra}; expected {schema.names}")
    return pa.Table.from_arrays([_cast_column(table, data, f) for f in schema], schema=schema)


def _cast_column(table: str, data: pa.Table, field: pa.Field) -> pa.ChunkedArray:
    column = data.column(field.name)
    if not field.nullable and column.null_count:
        raise SchemaError(f"table {table!r}: column {field.name!r} is not nullable but has {column.null_count} null(s)")
    if column.type.equals(field.type):
        return column
    try:
        return column.cast(field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaError(
            f"table {table!r}: column {field.name!r} has type {column.type}, which does not cast to {field.type}: {exc}"
        ) from exc
