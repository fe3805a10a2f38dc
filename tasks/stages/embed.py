"""The embed stage: vectors for the `tools` docs that have none under the model key yet.

Owns the `embeddings` table (no other stage writes it). Each chunk of new vectors is
appended against the table version it was checked against (`Store.update`): a second
embedder racing this one re-checks which docs still lack a vector instead of appending
the same vectors twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage import Store, TableRef, embeddings_schema
from storage.commit import Append, Snapshot
from tasks.digests import config_hash
from toolweaver.codes.embed import EmbedConfig, docs_to_embed, embed_texts, load_embedder, model_key, render_doc

logger = logging.getLogger(__name__)

EMBED_WRITE_ROWS = 4096  # docs embedded per appended embeddings version
# What a text embedder is for this stage: texts -> (N, D) float32. Tests inject cheap ones.
Embedder = Callable[[Sequence[str]], np.ndarray]


def read_tools(store: Store) -> pa.Table:
    """The `tools` table sorted by tool_id (row order = embedding/code row order)."""
    if not store.exists("tools"):
        raise FileNotFoundError(f"store {store.root} has no `tools` table: run `toolweaver ingest` first")
    tools = store.read("tools")
    return tools.sort_by("tool_id")


def _stored_vectors(store: Store, key: str) -> pa.Table:
    """(doc_hash, embedding) rows of the embeddings table under model key `key`."""
    if not store.exists("embeddings"):
        return pa.table({"doc_hash": pa.array([], pa.string())})
    table = store.read("embeddings")
    return table.filter(pc.field("model_id") == key).select(["doc_hash", "embedding"])


def default_embedder(cfg: EmbedConfig) -> Embedder:
    """The sentence-transformers model of `cfg`, loaded on first use (not when nothing is new)."""
    state: dict[str, Any] = {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        if "model" not in state:
            state["model"] = load_embedder(cfg)
        return embed_texts(state["model"], texts, cfg)

    return embed


def embed_tools(store: Store, cfg: EmbedConfig, *, embedder: Embedder | None = None) -> tuple[TableRef | None, int]:
    """Embed every `tools` doc without a vector under model_key(cfg); returns (ref, n embedded).

    Distinct doc hashes are embedded once (two tools with the same doc share a vector).
    """
    tools = read_tools(store)
    key = model_key(cfg)
    stored = _stored_vectors(store, key)
    todo = docs_to_embed(tools.column("doc_hash").to_pylist(), stored.column("doc_hash").to_pylist())
    logger.info("embeddings (%s): %d docs in catalog, %d to embed", key, tools.num_rows, len(todo))
    if not todo:
        return store.latest("embeddings"), 0
    first_row = _first_row_per_doc(tools)
    records = tools.select(["tool_name", "api_name", "category", "description", "parameters"]).to_pylist()
    embed = embedder or default_embedder(cfg)
    ref: TableRef | None = None
    # Written chunk by chunk: an interrupted run (the full catalog takes minutes on CPU)
    # keeps what it embedded, and the next run embeds only the rest.
    for start in range(0, len(todo), EMBED_WRITE_ROWS):
        chunk = todo[start : start + EMBED_WRITE_ROWS]
        vectors = embed([render_doc(records[first_row[h]], cfg.template) for h in chunk])
        if vectors.shape[0] != len(chunk):
            raise ValueError(f"embedder returned {vectors.shape[0]} vectors for {len(chunk)} docs")
        ref = _append_vectors(store, key, chunk, vectors, cfg)
    return ref, len(todo)


def _first_row_per_doc(tools: pa.Table) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, h in enumerate(tools.column("doc_hash").to_pylist()):
        first.setdefault(h, i)
    return first


def _append_vectors(store: Store, key: str, hashes: list[str], vectors: np.ndarray, cfg: EmbedConfig) -> TableRef:
    dim = int(vectors.shape[1])
    schema = embeddings_schema(dim)
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    rows = pa.table(
        {
            "doc_hash": pa.array(hashes, pa.string()),
            "model_id": pa.array([key] * len(hashes), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
        },
        schema=schema,
    )

    def add_missing(snapshot: Snapshot) -> dict[str, pa.Table | Append]:
        stored_schema = snapshot.schema("embeddings")
        if stored_schema is None:
            return {"embeddings": rows}
        stored_dim = stored_schema.field("embedding").type.list_size
        if stored_dim != dim:
            # One FixedSizeList width per table: a model of another width replaces the
            # table; the old vectors stay readable in the table's Delta history.
            logger.warning(
                "embeddings table holds %d-d vectors; %s gives %d-d: overwriting "
                "(previous versions keep the old vectors)",
                stored_dim,
                key,
                dim,
            )
            return {"embeddings": rows}
        # Another embedder may have stored some of these docs since we looked.
        stored = snapshot.read("embeddings", columns=["doc_hash", "model_id"])
        assert stored is not None
        have = set(stored.filter(pc.field("model_id") == key).column("doc_hash").to_pylist())
        return {"embeddings": Append(rows.filter(pa.array([h not in have for h in hashes], pa.bool_())))}

    refs = store.update(
        ["embeddings"], add_missing, schema=schema, config_hash=config_hash(cfg), inputs=_refs(store, "tools")
    )
    return refs["embeddings"]


def tool_vectors(store: Store, tools: pa.Table, cfg: EmbedConfig) -> np.ndarray:
    """(N, D) float32 vectors of `tools` rows, in row order; every doc must be embedded."""
    stored = _stored_vectors(store, model_key(cfg))
    index = {h: i for i, h in enumerate(stored.column("doc_hash").to_pylist())}
    hashes = tools.column("doc_hash").to_pylist()
    missing = sorted({h for h in hashes if h not in index})
    if missing:
        raise KeyError(f"{len(missing)} tool docs have no embedding under {model_key(cfg)}; run embed_tools first")
    column = stored.column("embedding")
    # list_flatten honours slice offsets (`.values` of a sliced list array would not)
    matrix = pc.list_flatten(column).to_numpy().reshape(len(column), column.type.list_size)
    return np.ascontiguousarray(matrix[[index[h] for h in hashes]], dtype=np.float32)


def _refs(store: Store, *tables: str) -> list[TableRef]:
    return [ref for ref in (store.latest(t) for t in tables) if ref is not None]
