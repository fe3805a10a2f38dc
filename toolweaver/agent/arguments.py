"""The argument phase: JSON arguments generated under the chosen tool's JSON Schema.

xgrammar compiles the schema into a token-level grammar for this tokenizer and, at each
step, fills a vocabulary bitmask of the tokens that keep the text a valid prefix; masked
logits go through the usual greedy/sampling choice. Chosen over lm-format-enforcer and
outlines for its per-token overhead (measured in `bench/constrained_args.py`, figures in
docs/results.md): the mask is computed in C++ from a precompiled grammar, and compiled
grammars are cached per schema. Separators follow `json.dumps` (`", "`, `": "`), the
format of the trajectory stage's argument messages, properties in the documented order
(xgrammar 0.2.9 with `any_order=True` let a required property be skipped and a key repeat).

Text is read back from xgrammar's own decoded vocabulary (the bytes the grammar matched),
so what is parsed is exactly what was constrained, whatever the tokenizer's decoder does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import xgrammar as xgr

from toolweaver.agent.schema import bound_for_generation

MAX_ARGUMENT_TOKENS = 1024  # a cap for runaway generations; BFCL answers need far fewer


@dataclass(frozen=True)
class Generated:
    text: str  # the argument JSON text
    arguments: Any  # the parsed JSON value, None when the budget ran out first
    token_ids: tuple[int, ...]
    complete: bool  # the grammar reached an accepting state and EOS was chosen


class ArgumentGenerator:
    """Schema-constrained argument generation for one model + tokenizer.

    `vocab_size` is the model's output size (it may exceed the tokenizer's: padded
    embeddings); ids past the tokenizer's are never allowed."""

    def __init__(self, tokenizer: Any, vocab_size: int, *, max_tokens: int = MAX_ARGUMENT_TOKENS) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; the argument phase ends on EOS")
        self.eos_id = int(tokenizer.eos_token_id)
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=[self.eos_id])
        self.compiler = xgr.GrammarCompiler(self.info, cache_enabled=True)
        self.decoded = self.info.decoded_vocab
        self.max_tokens = max_tokens

    def matcher(self, schema: Mapping[str, Any]) -> xgr.GrammarMatcher:
        compiled = self.compiler.compile_json_schema(
            json.dumps(bound_for_generation(schema)),  # not sort_keys: property order is the output order
            any_whitespace=False,
            separators=(", ", ": "),
            strict_mode=True,
            any_order=False,
        )
        return xgr.GrammarMatcher(compiled)

    def text_of(self, token_ids: list[int]) -> str:
        raw = b"".join(_as_bytes(self.decoded[i]) for i in token_ids if i != self.eos_id)
        return raw.decode("utf-8", errors="replace")

    @torch.no_grad()
    def generate(
        self,
        model: torch.nn.Module,
        prompt: list[int],
        schema: Mapping[str, Any],
        *,
        generator: torch.Generator | None = None,
        temperature: float = 0.0,
    ) -> Generated:
        """Arguments for one prompt (ids ending where the assistant's message starts).
        Greedy when `temperature` is 0, else sampled with `generator`."""
        matcher = self.matcher(schema)
        device = next(model.parameters()).device
        bitmask = xgr.allocate_token_bitmask(1, self.info.vocab_size)
        out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True, logits_to_keep=1)
        cache_key, cache = cache_of(out)
        chosen: list[int] = []
        while len(chosen) < self.max_tokens:
            logits = out.logits[:, -1, : self.info.vocab_size].float().cpu()
            matcher.fill_next_token_bitmask(bitmask)
            xgr.apply_token_bitmask_inplace(logits, bitmask)
            token = _choose(logits[0], temperature, generator)
            if not matcher.accept_token(token):
                raise RuntimeError(f"xgrammar rejected token {token} it had allowed; grammar state is inconsistent")
            chosen.append(token)
            if matcher.is_terminated():
                break
            step = torch.tensor([[token]], device=device)
            out = model(input_ids=step, use_cache=True, **{cache_key: cache})
            cache = cache_of(out)[1]
        complete = matcher.is_terminated()
        text = self.text_of(chosen)
        return Generated(text, json.loads(text) if complete else None, tuple(chosen), complete)


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


def _as_bytes(piece: bytes | str) -> bytes:
    return piece if isinstance(piece, bytes) else piece.encode("utf-8")


def cache_of(out: Any) -> tuple[str, Any]:
    """(forward keyword, cache): transformers >= 5.2x names it `cache`, older `past_key_values`."""
    for key in ("cache", "past_key_values"):
        if out.get(key) is not None:
            return key, out[key]
    raise RuntimeError("the model returned no KV cache; constrained generation needs use_cache=True support")
