"""`toolweaver tokenize`: the embed, co-usage and codes stages, one after another.

Each stage owns its tables (embed: `embeddings`; cousage: `cousage`; codes: `codes` and
the code model's tables) and commits them through the store's write protocol; this
module only chains them for the CLI and scripts, and exports the code-model benchmark inputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from storage import Store
from tasks.stages.codes import TokenizeConfig, TokenizeResult, build_codes
from tasks.stages.cousage import build_cousage, read_cousage
from tasks.stages.embed import Embedder, embed_tools, read_tools, tool_vectors
from toolweaver.codes.cousage import edges_to_indices
from toolweaver.codes.embed import EmbedConfig, model_key


def tokenize(store: Store, cfg: TokenizeConfig, *, embedder: Embedder | None = None) -> TokenizeResult:
    """Embed new docs, refresh co-usage, then place new tools (or retrain when asked/needed)."""
    _, n_embedded = embed_tools(store, cfg.embed, embedder=embedder)
    build_cousage(store)
    result = build_codes(store, cfg)
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
