"""Content digests of Arrow tables.

The digest is sha256 over a canonical serialization: a version tag, the schema (names,
types, nullability; no metadata), the row count, then the rows in their order, cut into
fixed slices of `_SLICE_ROWS` rows, each serialized as an uncompressed, dictionary-free
Parquet body (the bytes before the footer). Parquet writes only valid values (nulls are
definition levels), so the digest does not depend on how the table is chunked or on bytes
hidden under nulls; the footer is left out because it names the writer's version.

Row order matters: the same rows in another order give another digest. Parquet's
page encoding is stable across pyarrow releases in practice, but a change there would
change digests (a one-off new version on the next identical write, never a wrong "same").
"""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq

_TAG = b"toolweaver-digest-v1\n"
_SLICE_ROWS = 65_536
_PARQUET_TAIL_BYTES = 8  # 4-byte footer length + b"PAR1"


def schema_text(schema: pa.Schema) -> str:
    """Names, types and nullability of `schema`, one field per line, no metadata."""
    return "\n".join(f"{f.name}: {f.type}{'' if f.nullable else ' not null'}" for f in schema.remove_metadata())


def table_digest(data: pa.Table) -> str:
    """sha256 hex digest of `data` (schema + rows in order); see the module docstring."""
    h = hashlib.sha256(_TAG)
    h.update(schema_text(data.schema).encode())
    h.update(f"\nrows={data.num_rows}\n".encode())
    for start in range(0, data.num_rows, _SLICE_ROWS):
        h.update(_parquet_body(data.slice(start, _SLICE_ROWS).combine_chunks()))
    return h.hexdigest()


def chain_digest(previous: str, appended: str) -> str:
    """Digest of a table after an append: it names the content as built by that sequence."""
    return hashlib.sha256(f"append\n{previous}\n{appended}".encode()).hexdigest()


def _parquet_body(part: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(
        part,
        sink,
        compression="none",
        use_dictionary=False,
        write_statistics=False,
        store_schema=False,
        row_group_size=max(part.num_rows, 1),
    )
    buf = sink.getvalue()
    footer_len = int.from_bytes(buf.slice(buf.size - _PARQUET_TAIL_BYTES, 4).to_pybytes(), "little")
    return buf.slice(0, buf.size - _PARQUET_TAIL_BYTES - footer_len)
