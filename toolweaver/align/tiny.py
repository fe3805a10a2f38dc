"""Tiny models built in code, for tests and smoke runs (no model hub exists here).

`tiny_tokenizer` is a word-level `tokenizers` tokenizer wrapped in
`PreTrainedTokenizerFast`, with a chat template and the usual special tokens;
`tiny_llama` is a 2-layer `LlamaForCausalLM` sized to it. Both are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# One message per line: role marker, content, end-of-turn. The generation prompt
# ends with the assistant marker so that the first generated token is content.
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Whitespace()


def tiny_tokenizer(texts: Iterable[str], *, max_words: int = 5000) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is the words of `texts` (most frequent first,
    ties by word), plus <pad> <unk> <s> </s> and the chat role markers."""
    counts: dict[str, int] = {}
    pre = _pre_tokenizer()
    for text in texts:
        for word, _ in pre.pre_tokenize_str(text):
            counts[word] = counts.get(word, 0) + 1
    specials = [PAD, UNK, BOS, EOS, *ROLE_TOKENS]
    words = sorted(counts, key=lambda w: (-counts[w], w))
    words = [w for w in words if w not in specials][:max_words]
    vocab = {tok: i for i, tok in enumerate([*specials, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        additional_special_tokens=list(ROLE_TOKENS),
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_llama(
    vocab_size: int,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    tie_word_embeddings: bool = False,
    pad_token_id: int = 0,
    bos_token_id: int = 2,
    eos_token_id: int = 3,
) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama (seeded) for tests; token ids match `tiny_tokenizer`."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie_word_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
    )
    # The global RNG is the only way to seed HF's weight init; restore it afterwards.
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return model
