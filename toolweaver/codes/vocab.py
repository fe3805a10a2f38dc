"""Code strings: one token per (level, code), letters a, b, c, ... for the levels.

format_code([12, 45]) == "<a_12><b_45>";  parse_code("<a_12><b_45>") == (12, 45)
vocabulary(L, K) == ["<a_0>", ..., "<a_{K-1}>", "<b_0>", ...]   (L*K tokens)
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

LEVEL_LETTERS = string.ascii_lowercase
_TOKEN = re.compile(r"<([a-z])_(\d+)>")


def level_token(level: int, code: int) -> str:
    """The token of `code` at `level` (0-based), e.g. (1, 45) -> "<b_45>"."""
    if not 0 <= level < len(LEVEL_LETTERS):
        raise ValueError(f"level must be in [0, {len(LEVEL_LETTERS)}), got {level}")
    if code < 0:
        raise ValueError(f"code must be >= 0, got {code}")
    return f"<{LEVEL_LETTERS[level]}_{code}>"


def format_code(levels: Sequence[int]) -> str:
    """Code sequence -> token string, e.g. (12, 45) -> "<a_12><b_45>"."""
    return "".join(level_token(level, int(code)) for level, code in enumerate(levels))


def parse_code(text: str) -> tuple[int, ...]:
    """Token string -> code sequence; the inverse of format_code. Raises ValueError on
    anything that is not exactly "<a_i><b_j>..." with letters in order."""
    tokens = _TOKEN.findall(text)
    if not tokens or "".join(f"<{letter}_{digits}>" for letter, digits in tokens) != text:
        raise ValueError(f"not a code string: {text!r} (expected e.g. '<a_12><b_45>')")
    letters = "".join(letter for letter, _ in tokens)
    if letters != LEVEL_LETTERS[: len(tokens)]:
        raise ValueError(f"code levels out of order in {text!r}: got {letters!r}")
    return tuple(int(digits) for _, digits in tokens)


def vocabulary(levels: int, codebook_size: int) -> list[str]:
    """All L*K code tokens, level by level."""
    if levels < 1 or codebook_size < 1:
        raise ValueError(f"levels and codebook_size must be >= 1, got {levels}, {codebook_size}")
    return [level_token(level, code) for level in range(levels) for code in range(codebook_size)]
