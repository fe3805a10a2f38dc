"""Tokenise ShareGPT conversations (`{role, content, loss}` messages) for causal-LM training.

Only messages with `loss: true` are learned: their tokens keep their ids as labels, every
other token (system/user turns, role headers, padding) gets `IGNORE_INDEX`. The conversation
is tokenised message by message, each message being the text its chat template adds to the
prefix before it, so labels align with tokens exactly and the assistant header (part of the
generation prompt) is never learned. Inference prompts are rendered with the same template
(`render_chat(..., add_generation_prompt=True)`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from transformers import PreTrainedTokenizerBase

from toolweaver.align.models import render_chat

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    """One tokenised conversation: `input_ids` and `labels` (same length, IGNORE_INDEX where no loss)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_loss_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def _tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def _suffix(longer: str, prefix: str, where: str) -> str:
    if not longer.startswith(prefix):
        raise ValueError(
            f"the chat template is not prefix-stable at {where}: rendering more messages changed "
            "earlier text, so per-message loss masks cannot be aligned; use a template without "
            "history-dependent rewriting"
        )
    return longer[len(prefix) :]


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase,
    conversation: Sequence[Mapping[str, object]],
    *,
    max_length: int,
) -> Encoded:
    """Token ids and labels of one conversation.

    A loss message contributes (header: no loss) + (content and end-of-turn: loss).
    Longer than `max_length`: the oldest tokens are cut (the targets sit at the end)."""
    if not conversation:
        raise ValueError("empty conversation")
    if not any(bool(m.get("loss", False)) for m in conversation):
        raise ValueError(f"conversation has no message with loss=true: {list(conversation)[:2]!r}")
    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""
    for i, message in enumerate(conversation):
        before = list(conversation[:i])
        with_message = render_chat(tokenizer, [*before, message])
        if message.get("loss", False):
            prompt = render_chat(tokenizer, before, add_generation_prompt=True) if before else rendered
            header = _suffix(prompt, rendered, f"message {i} header")
            body = _suffix(with_message, prompt, f"message {i}")
            header_ids, body_ids = _tokens(tokenizer, header), _tokens(tokenizer, body)
            input_ids += header_ids + body_ids
            labels += [IGNORE_INDEX] * len(header_ids) + body_ids
        else:
            ids = _tokens(tokenizer, _suffix(with_message, rendered, f"message {i}"))
            input_ids += ids
            labels += [IGNORE_INDEX] * len(ids)
        rendered = with_message
    if len(input_ids) > max_length:
        input_ids, labels = input_ids[-max_length:], labels[-max_length:]
    return Encoded(tuple(input_ids), tuple(labels))


def encode_all(
    tokenizer: PreTrainedTokenizerBase,
    conversations: Sequence[Sequence[Mapping[str, object]]],
    *,
    max_length: int,
) -> list[Encoded]:
    """`encode_conversation` over a dataset; logs how many were cut to `max_length` and fails
    when a cut removed every loss token of an example (raise `max_length`)."""
    encoded = [encode_conversation(tokenizer, c, max_length=max_length) for c in conversations]
    n_cut = sum(len(e) == max_length for e in encoded)
    empty = [i for i, e in enumerate(encoded) if e.n_loss_tokens == 0]
    if empty:
        raise ValueError(f"{len(empty)} examples lost all loss tokens to max_length={max_length} (first: {empty[:5]})")
    if n_cut:
        logger.warning(
            "%d of %d examples reached max_length=%d and were cut from the left", n_cut, len(encoded), max_length
        )
    return encoded


def collate(
    batch: Sequence[Encoded], *, pad_id: int, side: Literal["right", "left"] = "right"
) -> dict[str, torch.Tensor]:
    """Padded `input_ids`, `attention_mask`, `labels` (B, T), T = longest in the batch.

    `side` says where the padding goes; the training loop pads left (see `train.collate_left`),
    so both paddings share this one loop."""
    if not batch:
        raise ValueError("empty batch")
    width = max(len(e) for e in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example)
        span = slice(width - n, width) if side == "left" else slice(0, n)
        input_ids[row, span] = torch.tensor(example.input_ids)
        labels[row, span] = torch.tensor(example.labels)
        attention_mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
