"""Tiny models for the agent tests: a tokenizer whose vocabulary covers every printable
ASCII character (so any JSON text is writable) plus the words of given texts."""

from __future__ import annotations

import string
from collections.abc import Iterable

import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from toolweaver.align.collate import IGNORE_INDEX, encode_conversation
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


def train_to_memorise(model, tokenizer, conversations: list[list[dict]], max_steps: int = 600) -> int:
    """Full-batch AdamW on the assistant tokens until every one is the argmax; returns steps.
    The learning rate decays linearly to a tenth: at a constant rate the last few tokens
    (a word copied from far back) flip back and forth."""
    encoded = [encode_conversation(tokenizer, c, max_length=4096) for c in conversations]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.1, total_iters=max_steps)
    model.train()
    for step in range(1, max_steps + 1):
        optimizer.zero_grad()
        correct = True
        for example in encoded:
            ids = torch.tensor([example.input_ids])
            labels = torch.tensor([example.labels])
            logits = model(input_ids=ids).logits[0, :-1]
            target = labels[0, 1:]
            keep = target != IGNORE_INDEX
            torch.nn.functional.cross_entropy(logits[keep], target[keep]).backward()
            correct &= bool((logits[keep].argmax(-1) == target[keep]).all())
        if correct:
            model.eval()
            return step
        optimizer.step()
        schedule.step()
    model.eval()
    raise AssertionError(f"the tiny model did not memorise {len(encoded)} conversations in {max_steps} steps")
