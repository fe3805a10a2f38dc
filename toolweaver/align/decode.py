"""Constrained decoding: the model may only emit valid tool codes.

`constrained_beam_search` is a beam search written for the trie: each step scores only
the allowed children of every beam's node (CSR slices precomputed in `CodeTrie`, so no
full-vocabulary mask is built), keeps the `num_beams` best unfinished prefixes, and
collects finished codes (EOS edges). Because every finished hypothesis is a distinct
trie leaf, the top-k are k distinct tools. Scores are sequence log-probabilities
(sum over code tokens; plus the EOS token when `eos_in_score`). EOS is left out of the
score by default because retrieval examples with several tools train the model to
continue with the next code, not to stop, so EOS's probability says little about the
first code. `TrieLogitsProcessor` is the same constraint for `model.generate`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from transformers import LogitsProcessor, PreTrainedTokenizerBase
from transformers.cache_utils import Cache
from transformers.utils import ModelOutput

from toolweaver.align.atomic import ATOMIC_TOKEN_PATTERN
from toolweaver.align.datasets import retrieval_prompt
from toolweaver.align.models import render_chat
from toolweaver.align.trie import CodeTrie, build_trie
from toolweaver.align.vocab import code_token, parse_code

logger = logging.getLogger(__name__)


class DecodeConfig(BaseModel):
    """Beam search settings; `num_beams` None means `top_k`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_k: int = Field(default=5, ge=1)
    num_beams: int | None = Field(default=None, ge=1)
    eos_in_score: bool = False

    @model_validator(mode="after")
    def _beams_cover_top_k(self) -> DecodeConfig:
        if self.num_beams is not None and self.num_beams < self.top_k:
            raise ValueError(f"num_beams={self.num_beams} < top_k={self.top_k}: set num_beams >= top_k")
        return self

    @property
    def beams(self) -> int:
        return self.num_beams or self.top_k


@dataclass(frozen=True)
class Retrieved:
    tool_id: str
    code: str
    score: float  # sequence log-probability


def code_token_ids(tokenizer: PreTrainedTokenizerBase, code: str) -> list[int]:
    """Token ids of one code string (`<a_1><b_2>`: one id per level) or of one atomic tool
    token (`<<tool&&api>>`: one id), looked up token by token (never re-tokenised)."""
    if ATOMIC_TOKEN_PATTERN.fullmatch(code):
        tokens = [code]
    else:
        tokens = [code_token(level, index) for level, index in enumerate(parse_code(code))]
    ids = []
    for token in tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
            raise KeyError(f"code {code}: {token} is not in the tokenizer; add the code (or atomic) vocabulary first")
        ids.append(token_id)
    return ids


def trie_for_codes(tokenizer: PreTrainedTokenizerBase, codes: Mapping[str, str]) -> CodeTrie:
    """The trie of `{tool_id: code string}` in this tokenizer's ids."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; constrained decoding needs one to end codes")
    return build_trie({t: code_token_ids(tokenizer, c) for t, c in codes.items()}, tokenizer.eos_token_id)


def prompt_ids(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Mapping[str, object]]) -> list[int]:
    """Token ids of a prompt ending where the assistant's answer starts, tokenised piece by
    piece exactly as `collate.encode_conversation` tokenises a training conversation (each
    message = the text the chat template adds to the prefix, then the generation header),
    so the model sees at inference the very ids it was trained on."""
    ids: list[int] = []
    rendered = ""
    for i in range(len(messages)):
        text = render_chat(tokenizer, messages[: i + 1])
        ids += _piece(tokenizer, text, rendered)
        rendered = text
    ids += _piece(tokenizer, render_chat(tokenizer, messages, add_generation_prompt=True), rendered)
    if not ids:
        raise ValueError("empty prompt: give at least one message")
    return ids


def _piece(tokenizer: PreTrainedTokenizerBase, text: str, prefix: str) -> list[int]:
    if not text.startswith(prefix):
        raise ValueError("the chat template is not prefix-stable; prompts cannot match training tokenisation")
    rest = text[len(prefix) :]
    return list(tokenizer(rest, add_special_tokens=False)["input_ids"]) if rest else []


@torch.no_grad()
def constrained_beam_search(
    model: torch.nn.Module,
    prompt: Sequence[int],
    trie: CodeTrie,
    config: DecodeConfig,
) -> list[tuple[int, float]]:
    """Top-k (tool index, score) for one prompt, best first. Every result is a trie leaf."""
    device = next(model.parameters()).device
    trie = trie.to(device) if trie.offsets.device != device else trie
    # Only the last position's logits are needed: skip the vocabulary projection of the prompt.
    out = model(input_ids=torch.tensor([list(prompt)], device=device), use_cache=True, logits_to_keep=1)
    cache_key, cache = _cache_of(out)
    logp = _log_probs(out.logits)
    nodes = [0]
    scores = torch.zeros(1, device=device)
    finished: list[tuple[float, int]] = []
    while nodes:
        cand_score, cand_parent, cand_edge = _expand(trie, nodes, scores, logp)
        is_eos = trie.edge_tool[cand_edge] >= 0
        _collect(finished, trie, cand_score, cand_parent, cand_edge, is_eos, scores, config.eos_in_score)
        alive = (~is_eos).nonzero().squeeze(1)
        if alive.numel() == 0 or _done(finished, cand_score[alive], config.top_k):
            break
        best = cand_score[alive].topk(min(config.beams, alive.numel())).indices
        chosen = alive[best]
        parents, edges = cand_parent[chosen], cand_edge[chosen]
        nodes, scores = trie.edge_child[edges].tolist(), cand_score[chosen]
        if not config.eos_in_score and _all_pure_leaves(trie, nodes):
            # The next step could only append EOS, which is not scored: skip its forward pass.
            _collect_leaves(finished, trie, nodes, scores)
            break
        cache.reorder_cache(cast(torch.LongTensor, parents))
        out = model(input_ids=trie.edge_token[edges].unsqueeze(1), use_cache=True, **{cache_key: cache})
        cache, logp = _cache_of(out)[1], _log_probs(out.logits)
    finished.sort(key=lambda p: (-p[0], p[1]))
    return [(tool, score) for score, tool in finished[: config.top_k]]


def _cache_of(out: ModelOutput) -> tuple[str, Cache]:
    """(forward keyword, cache): transformers >= 5.2x names it `cache`, older `past_key_values`."""
    for key in ("cache", "past_key_values"):
        if out.get(key) is not None:
            return key, out[key]
    raise RuntimeError("the model returned no KV cache; constrained decoding needs use_cache=True support")


def _log_probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits[:, -1].float(), dim=-1)


def _expand(
    trie: CodeTrie, nodes: list[int], scores: torch.Tensor, logp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (beam, allowed edge) candidates with their cumulative scores."""
    starts, ends = trie.offsets[nodes].tolist(), trie.offsets[[n + 1 for n in nodes]].tolist()
    edges = torch.cat([torch.arange(s, e, device=logp.device) for s, e in zip(starts, ends, strict=False)])
    parents = torch.repeat_interleave(
        torch.arange(len(nodes), device=logp.device),
        torch.tensor([e - s for s, e in zip(starts, ends, strict=False)], device=logp.device),
    )
    return scores[parents] + logp[parents, trie.edge_token[edges]], parents, edges


def _collect(
    finished: list[tuple[float, int]],
    trie: CodeTrie,
    cand_score: torch.Tensor,
    cand_parent: torch.Tensor,
    cand_edge: torch.Tensor,
    is_eos: torch.Tensor,
    scores: torch.Tensor,
    eos_in_score: bool,
) -> None:
    idx = is_eos.nonzero().squeeze(1)
    if idx.numel() == 0:
        return
    values = cand_score[idx] if eos_in_score else scores[cand_parent[idx]]
    finished.extend(zip(values.tolist(), trie.edge_tool[cand_edge[idx]].tolist(), strict=False))


def _all_pure_leaves(trie: CodeTrie, nodes: list[int]) -> bool:
    """True when every node's only edge is EOS."""
    starts, ends = trie.offsets[nodes], trie.offsets[[n + 1 for n in nodes]]
    if bool(((ends - starts) != 1).any()):
        return False
    return bool((trie.edge_tool[starts] >= 0).all())


def _collect_leaves(finished: list[tuple[float, int]], trie: CodeTrie, nodes: list[int], scores: torch.Tensor) -> None:
    tools = trie.edge_tool[trie.offsets[nodes]].tolist()
    finished.extend(zip(scores.tolist(), tools, strict=False))


def _done(finished: list[tuple[float, int]], alive_scores: torch.Tensor, top_k: int) -> bool:
    """Log-probs only fall as a prefix grows, so once k finished codes beat every alive
    prefix, no alive beam can enter the top-k."""
    if len(finished) < top_k:
        return False
    kth = sorted((s for s, _ in finished), reverse=True)[top_k - 1]
    return float(alive_scores.max()) <= kth


def retrieve(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    trie: CodeTrie,
    config: DecodeConfig,
) -> list[Retrieved]:
    """The top-k tools for a query (retrieval prompt as in the training examples)."""
    prompt = prompt_ids(tokenizer, retrieval_prompt(query))
    results = constrained_beam_search(model, prompt, trie, config)
    return [Retrieved(trie.tool_ids[i], _code_text(tokenizer, trie.sequences[i]), s) for i, s in results]


def _code_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return "".join(tokenizer.convert_ids_to_tokens(list(ids)))


class TrieLogitsProcessor(LogitsProcessor):
    """Masks `model.generate` scores to the trie: after the prompt, only the allowed children
    of the node the generated tokens reached; after a finished code (or off the trie),
    only EOS."""

    def __init__(self, trie: CodeTrie, prompt_length: int) -> None:
        self.trie, self.prompt_length = trie, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, ids in enumerate(input_ids[:, self.prompt_length :].tolist()):
            node = self.trie.walk(ids)
            allowed = self.trie.allowed(node) if node is not None else torch.tensor([self.trie.eos_id])
            mask[row, allowed.to(scores.device)] = 0.0
        return cast(torch.FloatTensor, scores + mask)
