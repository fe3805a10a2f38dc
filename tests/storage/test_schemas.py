"""Declared schemas, validation errors, and the content digest."""

from __future__ import annotations

import pyarrow as pa
import pytest

from storage import SCHEMAS, SchemaError, embeddings_schema, register_schema
from storage.digest import chain_digest, table_digest
from storage.schemas import conform, schema_for

from ._helpers import qrels, tools

TABLES_MD = {
    "tools",
    "tool_doc_variants",
    "queries",
    "qrels",
    "trajectories",
    "quarantine",
    "lineage",
    "checkpoints",
    "cousage",
    "codes",
}


def test_every_documented_table_has_a_schema() -> None:
    assert TABLES_MD <= set(SCHEMAS)
    assert SCHEMAS["tool_doc_variants"].names == [*SCHEMAS["tools"].names, "reason"]
    assert SCHEMAS["qrels"].field("relevance").type == pa.int32()
    assert SCHEMAS["codes"].field("levels").type == pa.list_(pa.int32())
    assert embeddings_schema(8).field("embedding").type == pa.list_(pa.float32(), 8)


def test_conform_casts_and_reorders() -> None:
    data = pa.table({"source": ["s"], "relevance": [3], "tool_id": ["t"], "query_id": ["q"]})
    out = conform("qrels", data, SCHEMAS["qrels"])
    assert out.schema.equals(SCHEMAS["qrels"])
    assert out.to_pylist() == [{"query_id": "q", "tool_id": "t", "relevance": 3, "source": "s"}]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pa.table({"query_id": ["q"], "tool_id": ["t"], "source": ["s"]}), "missing column(s) ['relevance']"),
        (
            pa.table({"query_id": ["q"], "tool_id": ["t"], "relevance": [1], "source": ["s"], "x": [1]}),
            "unexpected column(s) ['x']",
        ),
        (
            pa.table({"query_id": ["q"], "tool_id": ["t"], "relevance": ["high"], "source": ["s"]}),
            "column 'relevance' has type string",
        ),
        (
            pa.table({"query_id": ["q"], "tool_id": ["t"], "relevance": [2**40], "source": ["s"]}),
            "column 'relevance' has type int64",
        ),
        (
            pa.table(
                {"query_id": [None], "tool_id": ["t"], "relevance": [1], "source": ["s"]},
                schema=pa.schema(
                    [
                        ("query_id", pa.string()),
                        ("tool_id", pa.string()),
                        ("relevance", pa.int64()),
                        ("source", pa.string()),
                    ]
                ),
            ),
            "column 'query_id' is not nullable but has 1 null(s)",
        ),
    ],
)
def test_conform_errors_name_the_column(data: pa.Table, message: str) -> None:
    with pytest.raises(SchemaError) as err:
        conform("qrels", data, SCHEMAS["qrels"])
    assert message in str(err.value)
    assert "'qrels'" in str(err.value)


def test_register_schema_is_idempotent_and_refuses_conflicts() -> None:
    name = "test_only_metrics"
    schema = pa.schema([("step", pa.int64()), ("loss", pa.float64())])
    try:
        assert register_schema(name, schema) is schema
        register_schema(name, pa.schema([("step", pa.int64()), ("loss", pa.float64())]))
        with pytest.raises(ValueError, match="already has a different schema"):
            register_schema(name, pa.schema([("step", pa.int32())]))
        register_schema(name, pa.schema([("step", pa.int32())]), replace=True)
        assert SCHEMAS[name].names == ["step"]
    finally:
        SCHEMAS.pop(name, None)
    with pytest.raises(ValueError, match="reserved"):
        register_schema("history", schema)
    with pytest.raises(ValueError, match="invalid table name"):
        register_schema("../x", schema)


def test_embeddings_schema_comes_from_the_data() -> None:
    vectors = pa.FixedSizeListArray.from_arrays(pa.array([0.0] * 6, pa.float32()), 3)
    data = pa.table({"doc_hash": ["a", "b"], "model_id": ["m", "m"], "embedding": vectors})
    assert schema_for("embeddings", data).equals(embeddings_schema(3))
    ragged = pa.table({"doc_hash": ["a"], "model_id": ["m"], "embedding": [[0.0, 1.0]]})
    with pytest.raises(SchemaError, match="FixedSizeList"):
        schema_for("embeddings", ragged)
    with pytest.raises(SchemaError, match="register_schema"):
        schema_for("no_such_table", data)


def test_digest_ignores_chunking_and_bytes_under_nulls() -> None:
    whole = tools(300)
    rechunked = pa.concat_tables([whole.slice(0, 7), whole.slice(7, 100), whole.slice(107)])
    assert rechunked.column(0).num_chunks == 3
    assert table_digest(whole) == table_digest(rechunked)
    # Same logical column, different bytes hidden under the null slot.
    a = pa.array([1, None, 3], pa.int64())
    hidden = pa.Array.from_buffers(
        pa.int64(), 3, [a.buffers()[0], pa.py_buffer(pa.array([1, 999, 3], pa.int64()).buffers()[1])]
    )
    assert hidden.to_pylist() == a.to_pylist()
    assert table_digest(pa.table({"x": a})) == table_digest(pa.table({"x": hidden}))


def test_digest_sees_rows_order_types_and_names() -> None:
    base = qrels(["a", "b", "c"])
    assert table_digest(base) == table_digest(qrels(["a", "b", "c"]))
    assert table_digest(base) != table_digest(qrels(["a", "b", "d"]))
    assert table_digest(base) != table_digest(base.take([2, 1, 0]))
    assert table_digest(base) != table_digest(base.cast(base.schema.set(2, pa.field("relevance", pa.int64(), False))))
    assert table_digest(base) != table_digest(base.rename_columns(["q", "tool_id", "relevance", "source"]))
    assert table_digest(base.slice(0, 0)) != table_digest(base)
    assert chain_digest("x", "y") != chain_digest("y", "x")


def test_digest_spans_slices() -> None:
    many = pa.table({"x": pa.array(range(70_000), pa.int64())})
    changed = pa.table({"x": pa.array([*range(69_999), -1], pa.int64())})
    assert table_digest(many) != table_digest(changed)
