"""Tiny models for the agent tests: a tokenizer whose vocabulary covers every printable
ASCII character (so any JSON text is writable) plus the words of given texts."""

from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from toolweaver.align.tiny import BOS, EOS, PAD, ROLE_TOKENS, TINY_CHAT_TEMPLATE, UNK

_PIECES = r"\w+|[^\w]"  # words, then every other character (spaces too) on its own


def char_tokenizer(texts: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    pre = pre_tokenizers.Split(Regex(_PIECES), behavior="isolated")
    words: set[str] = set()
    for text in texts:
        words.update(piece for piece, _ in pre.pre_tokenize_str(text))
    chars = [c for c in string.printable if c not in "\t\n\r\x0b\x0c"]
    specials = [PAD, UNK, BOS, EOS, *ROLE_TOKENS]
    vocab_list = [*specials, *chars, *sorted(words - set(chars) - set(specials))]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(vocab_list)}, unk_token=UNK))
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
