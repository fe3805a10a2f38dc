"""Has the model memorised the catalog? Exact match of trie-constrained top-1 decoding on a
seeded sample of memorization examples: the check that stops the memorization stage.

A probe is built from the memorization conversations alone (prompt = every message before
the last, answer = the last, assistant message: a code `<a_1><b_2>` or an atomic token), so
it serves both token schemes. The trie holds every answer of the catalog, not only the
sampled ones: a sampled tool must beat all tools, as at evaluation.

Top-1 of the constrained beam search with one beam is greedy decoding on the trie, so the
check decodes its prompts greedily in left-padded batches (`greedy_decode`: one forward per
code level for a whole batch instead of one per level per prompt); a test holds it equal to
`constrained_beam_search` top-1.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from toolweaver.align.decode import prompt_ids, trie_for_codes
from toolweaver.align.trie import CodeTrie

DEFAULT_SAMPLE = 200


@dataclass(frozen=True)
class MemorizationProbe:
    """`prompts[i]` (token ids) should decode to `answers[i]`; `trie` holds every answer."""

    prompts: tuple[tuple[int, ...], ...]
    answers: tuple[str, ...]
    trie: CodeTrie
    pad_id: int

    def __len__(self) -> int:
        return len(self.answers)


def memorization_probe(
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[Mapping[str, object]]],
    *,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
) -> MemorizationProbe:
    """A seeded sample of `sample` examples (all when fewer); the draw depends on the set of
    answers, not on the order of `conversations`."""
    if sample < 1:
        raise ValueError(f"sample={sample}: check at least one tool")
    pairs: dict[str, Sequence[Mapping[str, object]]] = {}
    for i, conversation in enumerate(conversations):
        if len(conversation) < 2 or conversation[-1].get("role") != "assistant":
            raise ValueError(f"memorization example {i} does not end with the assistant's answer: {conversation!r}")
        answer = str(conversation[-1]["content"])
        if answer in pairs:
            raise ValueError(f"memorization examples {i} and an earlier one share the answer {answer!r}")
        pairs[answer] = conversation[:-1]
    if not pairs:
        raise ValueError("no memorization examples to check")
    answers = sorted(pairs)
    chosen = sorted(random.Random(seed).sample(answers, min(sample, len(answers))))
    trie = trie_for_codes(tokenizer, {a: a for a in answers})
    prompts = tuple(tuple(prompt_ids(tokenizer, pairs[a])) for a in chosen)
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; load it with toolweaver.align.models.load_tokenizer")
    return MemorizationProbe(prompts, tuple(chosen), trie, int(tokenizer.pad_token_id))


@torch.no_grad()
def exact_match(model: torch.nn.Module, probe: MemorizationProbe, *, batch_size: int = 16) -> float:
    """Share of the probe's prompts whose top-1 constrained decode is their own answer.

    Runs in eval mode (no dropout, so it draws no random numbers and leaves a resumed run
    exact) and restores the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        decoded = greedy_decode(model, probe.prompts, probe.trie, pad_id=probe.pad_id, batch_size=batch_size)
    finally:
        model.train(was_training)
    hits = sum(probe.trie.tool_ids[tool] == answer for tool, answer in zip(decoded, probe.answers, strict=True))
    return hits / len(probe)


@torch.no_grad()
def greedy_decode(
    model: torch.nn.Module, prompts: Sequence[Sequence[int]], trie: CodeTrie, *, pad_id: int, batch_size: int = 16
) -> list[int]:
    """The tool index each prompt decodes to, greedily on the trie (= top-1 of
    `constrained_beam_search` with one beam: a node with an EOS edge ends the code there)."""
    edges = _TrieLists(trie)
    device = next(model.parameters()).device
    found: list[int] = []
    for start in range(0, len(prompts), batch_size):
        found += _greedy_batch(model, prompts[start : start + batch_size], edges, pad_id, device)
    return found


class _TrieLists:
    """The trie's CSR arrays as Python lists: per-row lookups without tensor indexing."""

    def __init__(self, trie: CodeTrie) -> None:
        self.offsets: list[int] = trie.offsets.tolist()
        self.token: list[int] = trie.edge_token.tolist()
        self.child: list[int] = trie.edge_child.tolist()
        self.tool: list[int] = trie.edge_tool.tolist()

    def leaf_tool(self, node: int) -> int:
        """The tool an EOS edge of `node` completes, -1 when it has none."""
        for edge in range(self.offsets[node], self.offsets[node + 1]):
            if self.tool[edge] >= 0:
                return self.tool[edge]
        return -1


def _greedy_batch(
    model: torch.nn.Module, prompts: Sequence[Sequence[int]], edges: _TrieLists, pad_id: int, device: torch.device
) -> list[int]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt))
        mask[row, width - len(prompt) :] = 1
    # Positions count real tokens only: a left-padded row sees the positions of its unpadded self.
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    nodes, tools = [0] * len(prompts), [-1] * len(prompts)
    next_position = positions[:, -1:] + 1
    while True:
        logits = out.logits[:, -1].float().cpu()
        chosen = [_greedy_step(edges, nodes, tools, row, logits[row], pad_id) for row in range(len(prompts))]
        if all(tool >= 0 for tool in tools):
            return tools
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        key, cache = next((k, out[k]) for k in ("cache", "past_key_values") if out.get(k) is not None)
        step = torch.tensor(chosen, device=device).unsqueeze(1)
        out = model(input_ids=step, attention_mask=mask, position_ids=next_position, use_cache=True, **{key: cache})
        next_position = next_position + 1


def _greedy_step(
    edges: _TrieLists, nodes: list[int], tools: list[int], row: int, logits: torch.Tensor, pad_id: int
) -> int:
    """Advance one row by its best allowed child -> the token fed next (pad once finished)."""
    if tools[row] >= 0:
        return pad_id
    node = nodes[row]
    start, end = edges.offsets[node], edges.offsets[node + 1]
    children = [e for e in range(start, end) if edges.tool[e] < 0]
    best = max(children, key=lambda e: float(logits[edges.token[e]]))
    nodes[row] = edges.child[best]
    tools[row] = edges.leaf_tool(nodes[row])
    return edges.token[best]


__all__ = ["DEFAULT_SAMPLE", "MemorizationProbe", "exact_match", "greedy_decode", "memorization_probe"]
