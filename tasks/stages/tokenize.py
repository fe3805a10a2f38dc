"""The tokenize stage: embeddings -> co-usage graph -> RQ-VAE -> unique, stable tool codes.

Each function takes a `storage.Store`, reads the tables it needs, calls the pure library
(`toolweaver.codes`) and writes through the store; all return small refs/summaries.

    embed_tools      embed the `tools` docs that have no vector under the model key yet
    build_cousage    (re)build the `cousage` edge table from `qrels` + `trajectories`
                     (a no-op version-wise when nothing changed: the store skips equal digests)
    train_and_assign train the RQ-VAE, assign unique codes to every tool, register the
                     tokenizer checkpoint; writes codes, collision_report, vocabulary,
                     rqvae_epochs, code_metrics
    assign_incremental  with a registered tokenizer and existing codes: encode only the tools
                     without a code and place them in free slots; existing codes never change
    tokenize         the whole stage: embed, co-usage, then incremental unless `retrain`
                     (or nothing exists yet)

`codes_version` is the tokenizer checkpoint id: every code row says which trained
tokenizer placed it. A tool whose doc changes keeps its code (stability first); only an
explicit retrain recomputes all codes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from storage import SCHEMAS, Store, TableRef, embeddings_schema
from tasks.digests import config_hash
from toolweaver.codes import RQVAEConfig
from toolweaver.codes.assign import CollisionReport
from toolweaver.codes.cousage import CoUsageEdge, cousage_edges, edges_to_indices
from toolweaver.codes.embed import (
    EmbedConfig,
    docs_to_embed,
    embed_texts,
    load_embedder,
    model_key,
    render_doc,
)

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "rqvae"
EMBED_WRITE_ROWS = 4096  # docs embedded per appended embeddings version
# What a text embedder is for this stage: texts -> (N, D) float32. Tests inject cheap ones.
Embedder = Callable[[Sequence[str]], np.ndarray]

COLLISION_REPORT_SCHEMA = SCHEMAS["collision_report"]
VOCABULARY_SCHEMA = SCHEMAS["vocabulary"]
EPOCHS_SCHEMA = SCHEMAS["rqvae_epochs"]
METRICS_SCHEMA = SCHEMAS["code_metrics"]


class TokenizeConfig(BaseModel):
    """What `toolweaver tokenize` runs: how docs are embedded, how the code model is trained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    rqvae: RQVAEConfig = Field(
        default_factory=RQVAEConfig,
        description="the code model (levels, codebook_size, epochs, lambda_cousage, seed, device, ...); "
        "a dict of overrides is validated into it",
    )
    retrain: bool = Field(False, description="retrain the code model and recompute every code")
    metrics_k: int = Field(10, ge=1, description="k of the decoded-latent nearest-neighbour recall")


@dataclass
class TokenizeResult:
    """What one run of the stage did (small: refs and counts)."""

    mode: str  # "full" | "incremental"
    n_embedded: int
    n_new_codes: int
    codes_version: str
    refs: dict[str, TableRef] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- embeddings
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
    mode = "append"
    if store.exists("embeddings"):
        stored_dim = store.read("embeddings", columns=["embedding"]).schema.field("embedding").type.list_size
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
            mode = "overwrite"
    return store.write(
        "embeddings", rows, mode=mode, schema=schema, config_hash=config_hash(cfg), inputs=_refs(store, "tools")
    )


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


# ----------------------------------------------------------------------------- co-usage
def cousage_groups(store: Store) -> list[frozenset[str]]:
    """Co-usage groups: relevant tools per query (qrels, relevance > 0) and tools per trajectory."""
    groups: list[frozenset[str]] = []
    if store.exists("qrels"):
        qrels = store.read("qrels", columns=["query_id", "tool_id", "relevance"])
        qrels = qrels.filter(pc.field("relevance") > 0)
        members: dict[str, set[str]] = {}
        for q, t in zip(qrels.column("query_id").to_pylist(), qrels.column("tool_id").to_pylist(), strict=True):
            members.setdefault(q, set()).add(t)
        groups += [frozenset(members[q]) for q in sorted(members)]
    if store.exists("trajectories"):
        calls = store.read("trajectories", columns=["trajectory_id", "tool_ids"]).sort_by("trajectory_id")
        groups += [frozenset(ids or ()) for ids in calls.column("tool_ids").to_pylist()]
    return groups


def build_cousage(store: Store) -> TableRef:
    """Write the `cousage` table from qrels + trajectories (no new version when unchanged)."""
    edges = cousage_edges(cousage_groups(store))
    rows = pa.Table.from_pylist(
        [{"src": e.src, "dst": e.dst, "count": e.count, "weight": e.weight} for e in edges],
        schema=SCHEMAS["cousage"],
    )
    return store.write("cousage", rows, inputs=_refs(store, "qrels", "trajectories"))


def read_cousage(store: Store) -> list[CoUsageEdge]:
    if not store.exists("cousage"):
        return []
    rows = store.read("cousage")
    return [CoUsageEdge(**r) for r in rows.to_pylist()]


def cousage_rows(store: Store, tool_ids: Sequence[str]) -> Any:
    """The `cousage` edges over the rows of `tool_ids` as toolweaver.codes.CoUsageEdges."""
    from toolweaver.codes import CoUsageEdges

    src, dst, weight = edges_to_indices(read_cousage(store), {t: i for i, t in enumerate(tool_ids)})
    return CoUsageEdges(src=src, dst=dst, weight=weight)


# ----------------------------------------------------------------------------- training
def train_and_assign(store: Store, cfg: TokenizeConfig) -> TokenizeResult:
    """Train the tokenizer on every tool and (re)assign all codes."""
    from toolweaver.codes import assign_codes, code_metrics, save_rqvae, train_rqvae, vocabulary

    tools = read_tools(store)
    tool_ids = tools.column("tool_id").to_pylist()
    x = tool_vectors(store, tools, cfg.embed)
    edges = cousage_rows(store, tool_ids)
    trained = train_rqvae(x, edges, cfg.rqvae)
    assignment = assign_codes(trained.model, x, trained.cfg)
    with tempfile.TemporaryDirectory(prefix="rqvae-") as tmp:
        folder = save_rqvae(trained.model, trained.cfg, Path(tmp) / "rqvae")
        version = store.register_checkpoint(
            CHECKPOINT_KIND,
            folder,
            config_hash=config_hash(cfg),
            meta={
                "embed_model_key": model_key(cfg.embed),
                "n_tools": len(tool_ids),
                "levels": trained.cfg.levels,
                "codebook_size": trained.cfg.codebook_size,
            },
        )
    inputs = _refs(store, "tools", "embeddings", "cousage")
    chash = config_hash(cfg)
    tokens = vocabulary(trained.cfg.levels, trained.cfg.codebook_size)
    refs = {
        "codes": _write_codes(store, tool_ids, assignment.code_matrix, version, "overwrite", inputs, chash),
        "vocabulary": store.write(
            "vocabulary", _vocabulary_rows(tokens, trained.cfg.codebook_size, version), inputs=inputs, config_hash=chash
        ),
        "rqvae_epochs": store.write(
            "rqvae_epochs", _epoch_rows(trained.epoch_metrics, version), inputs=inputs, config_hash=chash
        ),
        "collision_report": store.write(
            "collision_report",
            _report_rows(assignment.report, tool_ids, version, "full"),
            mode="append",
            inputs=inputs,
            config_hash=chash,
        ),
    }
    metrics = code_metrics(
        assignment.code_matrix,
        x,
        trained.model,
        edges,
        k=cfg.metrics_k,
        seed=trained.cfg.seed,
        report=assignment.report,
    )
    logger.info("code metrics: %s", metrics)
    refs["code_metrics"] = store.write(
        "code_metrics",
        _metrics_rows(metrics, version, "full", cfg.metrics_k),
        mode="append",
        inputs=[refs["codes"]],
        config_hash=chash,
    )
    return TokenizeResult("full", 0, len(tool_ids), version, refs, metrics)


# ----------------------------------------------------------------------------- incremental
def latest_tokenizer(store: Store) -> str | None:
    """Id of the newest registered rqvae checkpoint, None when there is none."""
    listing = store.checkpoints(CHECKPOINT_KIND)
    if listing.num_rows == 0:
        return None
    newest = listing.sort_by([("created_at", "descending")])
    return str(newest.column("checkpoint_id")[0].as_py())


def _codes_tokenizer(store: Store) -> str | None:
    """The tokenizer that placed the current codes (newest codes_version), None without codes."""
    if not store.exists("codes"):
        return None
    versions = set(store.read("codes", columns=["codes_version"]).column("codes_version").to_pylist())
    if not versions:
        return None
    if len(versions) > 1:
        raise RuntimeError(f"codes table mixes tokenizers {sorted(versions)}; rerun with retrain")
    return versions.pop()


def assign_incremental(store: Store, cfg: TokenizeConfig, version: str) -> TokenizeResult:
    """Codes for the tools that have none, placed by tokenizer `version`; existing rows untouched."""
    from toolweaver.codes import assign_new_codes, load_rqvae

    meta = _checkpoint_meta(store, version)
    if meta.get("embed_model_key") != model_key(cfg.embed):
        raise ValueError(
            f"tokenizer {version} was trained on embeddings {meta.get('embed_model_key')!r}, not "
            f"{model_key(cfg.embed)!r}: use the same --model/template or pass --retrain"
        )
    model, rq_cfg = load_rqvae(store.checkpoint_path(version))
    _check_overrides(cfg, rq_cfg)
    tools = read_tools(store)
    codes = store.read("codes").sort_by("tool_id")
    have = set(codes.column("tool_id").to_pylist())
    new_mask = np.array([t not in have for t in tools.column("tool_id").to_pylist()], dtype=bool)
    new_tools = tools.filter(pa.array(new_mask))
    new_ids = new_tools.column("tool_id").to_pylist()
    if not new_ids:
        logger.info("incremental codes: every tool already has a code (tokenizer %s)", version)
        return TokenizeResult("incremental", 0, 0, version, {"codes": store.latest("codes")})
    existing = np.array(codes.column("levels").to_pylist(), dtype=np.int64).reshape(-1, rq_cfg.levels)
    levels = assign_new_codes(model, tool_vectors(store, new_tools, cfg.embed), existing, rq_cfg)
    inputs = _refs(store, "tools", "embeddings", "codes")
    ref = _write_codes(store, new_ids, levels, version, "append", inputs, config_hash(cfg))
    logger.info("incremental codes: %d new tools placed, %d existing codes unchanged", len(new_ids), len(existing))
    return TokenizeResult("incremental", 0, len(new_ids), version, {"codes": ref})


def _check_overrides(cfg: TokenizeConfig, trained: Any) -> None:
    """Fail when the caller asked for tokenizer settings that differ from the trained one."""
    # Asked for = differs from the schema default (a config that went through JSON has
    # every field set, so "set explicitly" cannot be told apart any more).
    ignore = {"device", "amp"}
    requested, defaults = cfg.rqvae, RQVAEConfig()
    differs = {
        k: (getattr(requested, k), getattr(trained, k))
        for k in type(requested).model_fields
        if k not in ignore
        and getattr(requested, k) != getattr(defaults, k)
        and getattr(requested, k) != getattr(trained, k)
    }
    if differs:
        raise ValueError(
            f"the existing tokenizer differs from the requested settings {differs} (requested, trained); "
            "pass --retrain to retrain with them"
        )


def _checkpoint_meta(store: Store, version: str) -> dict[str, Any]:
    rows = store.checkpoints(CHECKPOINT_KIND).filter(pc.field("checkpoint_id") == version)
    if rows.num_rows == 0:
        raise KeyError(f"codes name tokenizer {version!r}, which is not registered in {store.root}")
    return json.loads(rows.column("meta")[0].as_py() or "{}")


# ----------------------------------------------------------------------------- the stage
def tokenize(store: Store, cfg: TokenizeConfig, *, embedder: Embedder | None = None) -> TokenizeResult:
    """Embed new docs, refresh co-usage, then place new tools (or retrain when asked/needed)."""
    _, n_embedded = embed_tools(store, cfg.embed, embedder=embedder)
    build_cousage(store)
    version = _codes_tokenizer(store)
    if cfg.retrain or version is None:
        result = train_and_assign(store, cfg)
    else:
        result = assign_incremental(store, cfg, version)
    result.n_embedded = n_embedded
    return result


# ----------------------------------------------------------------------------- export
def export_tokenizer_inputs(store_root: str | Path, out: str | Path, cfg: EmbedConfig) -> dict[str, Any]:
    """Write embeddings.npy (N, D) float32, edges.npz (src, dst, weight over rows) and
    tool_ids.txt from a store (embeds missing docs and refreshes co-usage first)."""
    store = Store(store_root)
    embed_tools(store, cfg)
    build_cousage(store)
    tools = read_tools(store)
    tool_ids = tools.column("tool_id").to_pylist()
    x = tool_vectors(store, tools, cfg)
    src, dst, weight = edges_to_indices(read_cousage(store), {t: i for i, t in enumerate(tool_ids)})
    return write_export(Path(out), tool_ids, x, src, dst, weight, model_key(cfg))


def write_export(
    out: Path, tool_ids: Sequence[str], x: np.ndarray, src: np.ndarray, dst: np.ndarray, weight: np.ndarray, key: str
) -> dict[str, Any]:
    bad = [t for t in tool_ids if t.splitlines() != [t]]  # readers split with str.splitlines
    if bad:
        raise ValueError(f"{len(bad)} tool ids contain line breaks (e.g. {bad[0]!r}); tool_ids.txt cannot hold them")
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", np.ascontiguousarray(x, dtype=np.float32))
    np.savez(out / "edges.npz", src=src.astype(np.int64), dst=dst.astype(np.int64), weight=weight.astype(np.float32))
    (out / "tool_ids.txt").write_text("".join(f"{t}\n" for t in tool_ids), encoding="utf-8")
    meta = {"model_key": key, "tools": len(tool_ids), "dim": int(x.shape[1]), "edges": len(src)}
    (out / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


# ----------------------------------------------------------------------------- arrow rows
def _refs(store: Store, *tables: str) -> list[TableRef]:
    return [ref for ref in (store.latest(t) for t in tables) if ref is not None]


def _write_codes(
    store: Store,
    tool_ids: Sequence[str],
    levels: np.ndarray,
    version: str,
    mode: str,
    inputs: Sequence[TableRef],
    chash: str,
) -> TableRef:
    from toolweaver.codes import format_code

    rows = pa.table(
        {
            "tool_id": pa.array(list(tool_ids), pa.string()),
            "levels": pa.array([[int(c) for c in row] for row in levels], pa.list_(pa.int32())),
            "code": pa.array([format_code(row) for row in levels.tolist()], pa.string()),
            "codes_version": pa.array([version] * len(tool_ids), pa.string()),
        },
        schema=SCHEMAS["codes"],
    )
    return store.write("codes", rows, mode=mode, inputs=inputs, config_hash=chash)  # type: ignore[arg-type]


def _vocabulary_rows(tokens: Sequence[str], codebook_size: int, version: str) -> pa.Table:
    return pa.table(
        {
            "token": pa.array(list(tokens), pa.string()),
            "level": pa.array([i // codebook_size for i in range(len(tokens))], pa.int32()),
            "code": pa.array([i % codebook_size for i in range(len(tokens))], pa.int32()),
            "codes_version": pa.array([version] * len(tokens), pa.string()),
        },
        schema=VOCABULARY_SCHEMA,
    )


def _epoch_rows(epoch_metrics: Sequence[dict[str, Any]], version: str) -> pa.Table:
    names = EPOCHS_SCHEMA.names
    rows = [{**{n: m.get(n) for n in names}, "codes_version": version} for m in epoch_metrics]
    return pa.Table.from_pylist(rows, schema=EPOCHS_SCHEMA)


def _report_rows(report: CollisionReport, tool_ids: Sequence[str], version: str, mode: str) -> pa.Table:
    row = {n: getattr(report, n, None) for n in COLLISION_REPORT_SCHEMA.names}
    row.update(codes_version=version, mode=mode, moved_tool_ids=[tool_ids[i] for i in report.moved])
    return pa.Table.from_pylist([row], schema=COLLISION_REPORT_SCHEMA)


def _metrics_rows(metrics: dict[str, Any], version: str, mode: str, k: int) -> pa.Table:
    row = {n: metrics.get(n) for n in METRICS_SCHEMA.names}
    row.update(codes_version=version, mode=mode, k=k, recall_at_k=metrics.get(f"recall_at_{k}"))
    return pa.Table.from_pylist([row], schema=METRICS_SCHEMA)
