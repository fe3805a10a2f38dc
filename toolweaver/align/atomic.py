"""Atomic tool tokens (ToolGen): one new vocabulary token per tool instead of a code.

ToolGen's tokens are `<<tool_name&&api_name>>` (see ../shared/data/toolgen/virtual_tokens.txt),
i.e. the raw tool id between `<<` and `>>`. Raw ids can hold anything (spaces, quotes,
`>>`, newlines, non-ASCII, hundreds of characters), which tokenizers treat differently
(normalisers, whitespace stripping around added tokens), so the token here keeps only
`[A-Za-z0-9_.&-]`: every other run of characters becomes `_`, the body is cut to
`MAX_BODY_CHARS`, and whenever the id was altered a hash of the raw id is appended, so
the token is a pure function of the tool id and two ids never share a token.

    atomic_token("QRCheck&&quality_v1_quality_post") == "<<QRCheck&&quality_v1_quality_post>>"
    atomic_token("Thai Drivers License OCR&&Driver's  License")
        == "<<Thai_Drivers_License_OCR&&Driver_s_License~f65daa6d9e>>"

The fine-tuning data stays ONE set of examples (`sft_examples`, written with codes):
`rewrite_codes` replaces every code in a conversation by its tool's atomic token, so the
`atomic` model is trained on exactly the examples, order and split of the code model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from toolweaver.align.vocab import CODE_TOKEN_PATTERN, FINISH_TOKEN, split_codes

TokenScheme = Literal["codes", "atomic"]

MAX_BODY_CHARS = 96
_UNSAFE = re.compile(r"[^A-Za-z0-9_.&-]+")
# A maximal run of code tokens (whitespace between them allowed): one or more codes.
_CODE_RUN = re.compile(rf"{CODE_TOKEN_PATTERN.pattern}(?:\s*{CODE_TOKEN_PATTERN.pattern})*")
ATOMIC_TOKEN_PATTERN = re.compile(r"<<[A-Za-z0-9_.&~-]+>>")


def atomic_token(tool_id: str) -> str:
    """The tool's atomic token: `<<safe id>>`, plus `~hash` when the id had to be altered."""
    if not tool_id:
        raise ValueError("an atomic token needs a non-empty tool id")
    body = _UNSAFE.sub("_", tool_id)[:MAX_BODY_CHARS]
    if body != tool_id:
        body += "~" + hashlib.sha256(tool_id.encode("utf-8")).hexdigest()[:10]
    return f"<<{body}>>"


def atomic_tokens(tool_ids: Iterable[str]) -> dict[str, str]:
    """{tool_id: atomic token} for a catalog; raises if two ids would share a token."""
    out: dict[str, str] = {}
    owner: dict[str, str] = {FINISH_TOKEN: "the Finish action"}
    for tool_id in sorted(set(tool_ids)):
        token = atomic_token(tool_id)
        if token in owner:
            raise ValueError(f"tools {owner[token]!r} and {tool_id!r} map to the same atomic token {token}")
        owner[token] = tool_id
        out[tool_id] = token
    return out


def rewrite_codes(
    conversation: Sequence[Mapping[str, object]], token_of_code: Mapping[str, str], n_levels: int
) -> list[dict]:
    """The conversation with every code (`<a_1><b_2>`, several in a row allowed) replaced by
    the atomic token `token_of_code[code]`; a code without a token raises KeyError."""

    def replace(match: re.Match[str]) -> str:
        codes = split_codes(match.group(0), n_levels)
        missing = [c for c in codes if c not in token_of_code]
        if missing:
            raise KeyError(f"code {missing[0]} names no tool of the codes table; rebuild the datasets")
        return "".join(token_of_code[c] for c in codes)

    return [{**message, "content": _CODE_RUN.sub(replace, str(message["content"]))} for message in conversation]
