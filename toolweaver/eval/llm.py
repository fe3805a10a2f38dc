"""Adapter from a fine-tuned generative-retrieval checkpoint to the harness protocol.

Used for ``atomic`` (one new token per tool, ToolGen), ``toolweaver`` and labelled
checkpoints of either (``toolweaver-<label>``, e.g. an ablation). Training
is the align stage's job (``toolweaver.align.train``); here a trained checkpoint is
loaded (``toolweaver.align.models.load_checkpoint``) and ranks with trie-constrained
beam search over the candidates' codes (``toolweaver.align.decode.retrieve``), so every
returned tool is a real candidate and the top-k are distinct tools.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from toolweaver.align.decode import DecodeConfig, code_token_ids, retrieve, trie_for_codes
from toolweaver.align.models import CausalLM, load_checkpoint
from toolweaver.align.trie import CodeTrie
from toolweaver.device import resolve_device
from toolweaver.eval.base import Ranking, TrainQuery

logger = logging.getLogger(__name__)


class GenerativeMethod:
    """An LLM method: ``codes`` maps tool_id -> code string (``<a_1><b_2>``, or one atomic token code)."""

    zero_shot = False

    def __init__(
        self,
        method_id: str,
        checkpoint: str | Path,
        codes: Mapping[str, str],
        *,
        num_beams: int = 5,
        device: str = "auto",
    ) -> None:
        if not codes:
            raise ValueError(f"{method_id}: no tool codes given; run the codes stage (or pass the atomic codes)")
        self.method_id = method_id
        self.checkpoint = Path(checkpoint)
        self.codes = dict(codes)
        self.num_beams = num_beams
        self.device = resolve_device(device)
        self._model: CausalLM | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._tries: dict[tuple[str, ...], CodeTrie] = {}

    @property
    def model_id(self) -> str:
        return str(self.checkpoint)

    def fit(
        self,
        train_queries: Sequence[TrainQuery],
        qrels: Mapping[str, Mapping[str, float]],
        tools: Mapping[str, str],
    ) -> None:
        """Load the trained checkpoint; tools of the catalog without a code fail loudly."""
        uncoded = [t for t in tools if t not in self.codes]
        if uncoded:
            logger.warning(
                "%s: %d catalog tools have no code (first: %s); they cannot be retrieved — "
                "add them with the codes stage's incremental assignment",
                self.method_id,
                len(uncoded),
                uncoded[:3],
            )
        self._model, self._tokenizer = load_checkpoint(self.checkpoint, device=self.device)
        logger.info("%s: loaded %s on %s", self.method_id, self.checkpoint, self.device)
        self._drop_untokenizable()

    def _drop_untokenizable(self) -> None:
        """Codes with a token the checkpoint's vocabulary lacks (e.g. a code placed after
        training in a slot beyond the trained codebook) cannot be decoded: drop them, loudly."""
        _, tokenizer = self._loaded()
        dropped = []
        for tool_id, code in list(self.codes.items()):
            try:
                code_token_ids(tokenizer, code)
            except KeyError:
                dropped.append(tool_id)
                del self.codes[tool_id]
        if dropped:
            logger.warning(
                "%s: %d tools have codes with tokens %s lacks; they cannot be retrieved (first: %s)",
                self.method_id,
                len(dropped),
                self.checkpoint,
                dropped[:3],
            )

    def _loaded(self) -> tuple[CausalLM, PreTrainedTokenizerBase]:
        if self._model is None or self._tokenizer is None:
            raise RuntimeError(f"{self.method_id}: call fit() before rank()")
        return self._model, self._tokenizer

    def _trie(self, candidates: Sequence[str]) -> CodeTrie:
        key = tuple(candidates)
        if key not in self._tries:
            coded = {t: self.codes[t] for t in candidates if t in self.codes}
            if not coded:
                raise KeyError(f"{self.method_id}: none of the {len(candidates)} candidates has a code")
            self._tries[key] = trie_for_codes(self._loaded()[1], coded)
        return self._tries[key]

    def rank(self, query_texts: Sequence[str], candidate_tool_ids: Sequence[str], k: int) -> list[Ranking]:
        """Constrained top-k decoding of each query over the candidates' codes."""
        model, tokenizer = self._loaded()
        trie = self._trie(candidate_tool_ids)
        config = DecodeConfig(top_k=k, num_beams=max(k, self.num_beams))
        return [
            [(hit.tool_id, hit.score) for hit in retrieve(model, tokenizer, text, trie, config)] for text in query_texts
        ]
