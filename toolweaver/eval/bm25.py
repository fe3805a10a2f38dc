"""BM25 baseline (``bm25s``) over tool documentation.

The tokenizer keeps only alphanumeric runs, so JSON punctuation in the docs
(``{"name": ...}``) never becomes a term; snake_case and camelCase names are split
into their words because users write "order status", not "getOrderStatus".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import bm25s
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from toolweaver.eval.base import Ranking, TrainQuery, check_candidates, top_k

logger = logging.getLogger(__name__)

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"[a-z0-9]+")
# A short English stop list: BM25's IDF already down-weights common words, this only
# keeps filler ("I'm looking for ...") from matching every doc's description.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "i",
        "i'm",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "please",
        "that",
        "the",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "with",
        "you",
        "your",
        "can",
        "could",
        "would",
        "should",
        "will",
        "do",
        "does",
        "need",
        "want",
    ]
)


class BM25Config(BaseModel):
    """BM25 parameters (Lucene variant, bm25s defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text`` without stop words or punctuation."""
    spaced = _CAMEL.sub(" ", text)
    return [w for w in _WORD.findall(spaced.lower()) if w not in STOPWORDS]


class BM25Method:
    """``bm25``: lexical retrieval, no training (``fit`` only indexes the catalog)."""

    method_id = "bm25"
    zero_shot = True

    def __init__(self, config: BM25Config | None = None) -> None:
        self.config = config or BM25Config()
        self._retriever: bm25s.BM25 | None = None
        self._tool_ids: list[str] = []
        self._position: dict[str, int] = {}

    @property
    def model_id(self) -> str:
        """What produced the scores, for the report's model column."""
        return f"bm25s(k1={self.config.k1},b={self.config.b})"

    def fit(
        self,
        train_queries: Sequence[TrainQuery],
        qrels: Mapping[str, Mapping[str, float]],
        tools: Mapping[str, str],
    ) -> None:
        """Index every tool doc; the training queries are not used."""
        if not tools:
            raise ValueError("bm25: empty tool catalog")
        self._tool_ids = list(tools)
        self._position = {t: i for i, t in enumerate(self._tool_ids)}
        retriever = bm25s.BM25(k1=self.config.k1, b=self.config.b)
        retriever.index([tokenize(tools[t]) for t in self._tool_ids], show_progress=False)
        self._retriever = retriever
        logger.info("bm25: indexed %d tools", len(self._tool_ids))

    def rank(self, query_texts: Sequence[str], candidate_tool_ids: Sequence[str], k: int) -> list[Ranking]:
        """Score all catalog docs, keep the candidates, return their top-k."""
        if self._retriever is None:
            raise RuntimeError("bm25: call fit() before rank()")
        positions = check_candidates(candidate_tool_ids, self._position, self.method_id)
        vocab = self._retriever.vocab_dict
        candidates = list(candidate_tool_ids)
        out: list[Ranking] = []
        for text in query_texts:
            # Terms absent from the catalog score zero anyway; bm25s rejects them.
            terms = [w for w in tokenize(text) if w in vocab]
            scores = self._retriever.get_scores(terms) if terms else np.zeros(len(self._tool_ids))
            out.append(top_k(np.asarray(scores, dtype=np.float64)[positions], candidates, k))
        return out
