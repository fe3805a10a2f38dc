"""Has the model memorised the catalog? Exact match of trie-constrained top-1 decoding on a
seeded sample of memorization examples: the check that stops the memorization stage.

A probe is built from the memorization conversations alone (prompt = every message before
the last, answer = the last, assistant message: a code `<a_1><b_2>` or an atomic token), so
it serves both token schemes. The trie holds every answer of the catalog, not only the
sampled ones: a sampled tool must beat all tools, as at evaluation.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, trie_for_codes
from toolweaver.align.trie import CodeTrie

DEFAULT_SAMPLE = 200


@dataclass(frozen=True)
class MemorizationProbe:
    """`prompts[i]` (token ids) should decode to `answers[i]`; `trie` holds every answer."""

    prompts: tuple[tuple[int, ...], ...]
    answers: tuple[str, ...]
    trie: CodeTrie

    def __len__(self) -> int:
        return len(self.answers)


def memorization_probe(
    tokenizer, conversations: Sequence[Sequence[Mapping[str, object]]], *, sample: int = DEFAULT_SAMPLE, seed: int = 0
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
    return MemorizationProbe(prompts, tuple(chosen), trie)


@torch.no_grad()
def exact_match(model: torch.nn.Module, probe: MemorizationProbe) -> float:
    """Share of the probe's prompts whose top-1 constrained decode is their own answer.

    Runs in eval mode (no dropout, so it draws no random numbers and leaves a resumed run
    exact) and restores the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        top1 = DecodeConfig(top_k=1)
        hits = 0
        for prompt, answer in zip(probe.prompts, probe.answers, strict=True):
            (best, _), *_ = constrained_beam_search(model, prompt, probe.trie, top1)
            hits += probe.trie.tool_ids[best] == answer
    finally:
        model.train(was_training)
    return hits / len(probe)


__all__ = ["DEFAULT_SAMPLE", "MemorizationProbe", "exact_match", "memorization_probe"]
