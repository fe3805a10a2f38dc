"""Code-token vocabulary: `<a_0>…<a_{K-1}><b_0>…` (one letter per level) plus a Finish token,
added to a Hugging Face tokenizer as normal tokens, with the model's embeddings resized and
the new rows initialised (`random` as in the paper, `mean`, or `codebook`).

`codebook` init: the RQ-VAE codebook vectors (per level, (K, d)) are mapped into the LLM
embedding space by a ridge least-squares linear map W (d, H), fitted on the tools whose
codes are known: X = the tool's summed code vectors Σ_l codebook_l[code_l] (its quantised
RQ-VAE latent), Y = the mean input-embedding row of the tokens of the tool's name. Both
are centred before the fit (so W maps directions, not the offset). Each code token's row
is codebook_l[j] @ W, then rescaled to the mean row norm of the existing embeddings so
that new rows live at the scale the model is used to. Finish gets the mean row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# One definition of the code strings, shared with the codes stage.
from toolweaver.codes.vocab import format_code, level_token, vocabulary
from toolweaver.codes.vocab import parse_code as _strict_parse_code

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

__all__ = [
    "CODE_TOKEN_PATTERN",
    "FINISH_TOKEN",
    "CodeVocab",
    "VocabConfig",
    "add_atomic_tokens",
    "add_code_tokens",
    "code_token",
    "code_tokens",
    "code_vocab",
    "format_code",
    "parse_code",
    "split_codes",
]

FINISH_TOKEN = "<<Finish>>"
CODE_TOKEN_PATTERN = re.compile(r"<([a-z])_(\d+)>")

InitMode = Literal["random", "mean", "codebook"]


class VocabConfig(BaseModel):
    """How the new code-token rows are initialised."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    init: InitMode = "random"
    seed: int = 0
    # std of `random` rows; None = the model config's `initializer_range`.
    random_std: float | None = Field(default=None, gt=0)
    # ridge strength of the `codebook` linear map, relative to trace(XᵀX)/d.
    ridge: float = Field(default=1e-3, ge=0)


def code_token(level: int, index: int) -> str:
    """`code_token(1, 45) == "<b_45>"` (the codes stage's `level_token`)."""
    return level_token(level, index)


def code_tokens(n_levels: int, codebook_size: int) -> list[str]:
    """All L×K code tokens, level-major: `<a_0>…<a_{K-1}><b_0>…`."""
    return vocabulary(n_levels, codebook_size)


def parse_code(code: str) -> tuple[int, ...]:
    """`parse_code("<a_10><b_45>") == (10, 45)`; whitespace between tokens (as decoders put
    between added tokens) is ignored; anything else that is not one code raises."""
    return _strict_parse_code("".join(code.split()))


def split_codes(text: str, n_levels: int) -> list[str]:
    """Split a concatenation of L-level codes (`<a_1><b_2><a_3><b_4>`) into codes."""
    tokens = CODE_TOKEN_PATTERN.findall("".join(text.split()))
    if len(tokens) % n_levels:
        raise ValueError(f"{len(tokens)} code tokens is not a multiple of {n_levels}: {text!r}")
    return ["".join(f"<{a}_{b}>" for a, b in tokens[i : i + n_levels]) for i in range(0, len(tokens), n_levels)]


@dataclass(frozen=True)
class CodeVocab:
    """Token ids of the code vocabulary in one tokenizer: `level_ids[l][j]` is `<l_j>`."""

    level_ids: tuple[tuple[int, ...], ...]
    finish_id: int
    n_added: int

    def ids_for(self, levels: Sequence[int]) -> list[int]:
        return [self.level_ids[lv][j] for lv, j in enumerate(levels)]


def code_vocab(tokenizer: PreTrainedTokenizerBase, n_levels: int, codebook_size: int) -> CodeVocab:
    """Look up (never add) the code tokens; raises when any is missing or split."""
    level_ids: list[tuple[int, ...]] = []
    for lv in range(n_levels):
        ids = []
        for j in range(codebook_size):
            ids.append(_single_id(tokenizer, code_token(lv, j)))
        level_ids.append(tuple(ids))
    return CodeVocab(tuple(level_ids), _single_id(tokenizer, FINISH_TOKEN), 0)


def _single_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        raise KeyError(f"token {token!r} is not in the tokenizer; run add_code_tokens first")
    return token_id


def add_code_tokens(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    *,
    n_levels: int,
    codebook_size: int,
    config: VocabConfig,
    codebooks: Sequence[np.ndarray] | None = None,
    fit_levels: np.ndarray | None = None,
    fit_names: Sequence[str] | None = None,
) -> CodeVocab:
    """Add the L×K code tokens and Finish as normal tokens, resize the embeddings and
    initialise the new rows. Existing rows are left bit-identical. Tokens already
    present are reused (idempotent). `codebook` mode needs `codebooks` (L arrays (K, d))
    and the fit pairs `fit_levels` (N, L) with `fit_names` (N tool names)."""
    tokens = [*code_tokens(n_levels, codebook_size), FINISH_TOKEN]
    existing, n_base, n_added = _add_and_resize(tokenizer, model, tokens)
    vocab = code_vocab(tokenizer, n_levels, codebook_size)
    new_ids = [_single_id(tokenizer, t) for t in tokens if t not in existing]
    if new_ids:
        _init_new_rows(tokenizer, model, new_ids, n_base, vocab, config, codebooks, fit_levels, fit_names)
    logger.info("added %d code tokens (%s init); tokenizer size now %d", n_added, config.init, len(tokenizer))
    return CodeVocab(vocab.level_ids, vocab.finish_id, n_added)


def add_atomic_tokens(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, tokens: Sequence[str], *, config: VocabConfig
) -> list[int]:
    """Add one token per tool (ToolGen's atomic tokens, `toolweaver.align.atomic`) and Finish
    as normal tokens, resize the embeddings and initialise the new rows (`random` or `mean`;
    `codebook` needs code levels, which atomic tokens do not have). Existing rows stay
    bit-identical; tokens already present are reused. Returns the ids of `tokens`."""
    if config.init == "codebook":
        raise ValueError("init='codebook' maps code levels to rows; atomic tokens take init 'random' or 'mean'")
    wanted = [*tokens, FINISH_TOKEN]
    existing, n_base, n_added = _add_and_resize(tokenizer, model, wanted)
    ids = [_single_id(tokenizer, t) for t in wanted]
    new_ids = [i for t, i in zip(wanted, ids, strict=True) if t not in existing]
    if new_ids:
        _init_new_rows(tokenizer, model, new_ids, n_base, None, config, None, None, None)
    logger.info("added %d atomic tokens (%s init); tokenizer size now %d", n_added, config.init, len(tokenizer))
    return ids[:-1]


def _add_and_resize(
    tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, tokens: Sequence[str]
) -> tuple[set[str], int, int]:
    """Add `tokens` as normal tokens and grow the embeddings to fit: (tokens present
    before, number of base rows, number added)."""
    from toolweaver.align.models import embedding_rows

    existing = set(tokenizer.get_vocab())
    n_rows = embedding_rows(model)
    # Base rows = real tokens only (some models pad the matrix beyond the tokenizer).
    n_base = min(len(tokenizer), n_rows)
    n_added = tokenizer.add_tokens(list(tokens), special_tokens=False)
    if len(tokenizer) > n_rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    return existing, n_base, n_added


def _init_new_rows(
    tokenizer: PreTrainedTokenizerBase,
    model: PreTrainedModel,
    new_ids: Sequence[int],
    n_base: int,
    vocab: CodeVocab | None,
    config: VocabConfig,
    codebooks: Sequence[np.ndarray] | None,
    fit_levels: np.ndarray | None,
    fit_names: Sequence[str] | None,
) -> None:
    import torch  # lazily: the code-string helpers above must not pull in torch

    from toolweaver.align.models import embedding_matrices

    matrices = embedding_matrices(model)
    name_ids = _name_token_ids(tokenizer, fit_names, n_base) if config.init == "codebook" else None
    generator = torch.Generator().manual_seed(config.seed)
    std = config.random_std or float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        for weight in matrices:
            rows = _new_rows(weight[:n_base], vocab, new_ids, config, std, generator, codebooks, fit_levels, name_ids)
            weight[torch.tensor(new_ids)] = rows.to(weight.dtype)


def _name_token_ids(tokenizer: PreTrainedTokenizerBase, names: Sequence[str] | None, n_base: int) -> list[list[int]]:
    if names is None:
        raise ValueError("init='codebook' needs fit_names (tool names) and fit_levels (their codes)")
    result = []
    for name in names:
        ids = [i for i in tokenizer(name, add_special_tokens=False)["input_ids"] if i < n_base]
        result.append(ids)
    return result


def _new_rows(
    base: torch.Tensor,
    vocab: CodeVocab | None,
    new_ids: Sequence[int],
    config: VocabConfig,
    std: float,
    generator: torch.Generator,
    codebooks: Sequence[np.ndarray] | None,
    fit_levels: np.ndarray | None,
    name_ids: list[list[int]] | None,
) -> torch.Tensor:
    """Rows (len(new_ids), H) for one embedding matrix whose first rows are `base` (V_old, H)."""
    import torch

    base = base.detach().float().cpu()
    hidden = base.shape[1]
    if config.init == "random":
        return torch.randn(len(new_ids), hidden, generator=generator) * std
    mean_row = base.mean(dim=0)
    if config.init == "mean":
        return mean_row.expand(len(new_ids), hidden).clone()
    if vocab is None:
        raise ValueError("init='codebook' maps code levels to rows: it needs the code vocabulary")
    code_rows = _codebook_rows(base, codebooks, fit_levels, name_ids, config.ridge)
    by_id = {tid: code_rows[lv][j] for lv, ids in enumerate(vocab.level_ids) for j, tid in enumerate(ids)}
    return torch.stack([by_id.get(i, mean_row) for i in new_ids])


def _codebook_rows(
    base: torch.Tensor,
    codebooks: Sequence[np.ndarray] | None,
    fit_levels: np.ndarray | None,
    name_ids: list[list[int]] | None,
    ridge: float,
) -> list[torch.Tensor]:
    """Per level, (K, H) rows: codebook vectors mapped by the fitted W and scaled to the mean norm."""
    import torch

    if codebooks is None or fit_levels is None or name_ids is None:
        raise ValueError("init='codebook' needs codebooks (L arrays (K, d)) and fit_levels (N, L)")
    books = [torch.as_tensor(np.asarray(cb), dtype=torch.float64) for cb in codebooks]
    levels = torch.as_tensor(np.asarray(fit_levels), dtype=torch.long)
    if levels.ndim != 2 or levels.shape[1] != len(books) or levels.shape[0] != len(name_ids):
        raise ValueError(f"fit_levels {tuple(levels.shape)} must be (N={len(name_ids)}, L={len(books)})")
    keep = [i for i, ids in enumerate(name_ids) if ids]
    if len(keep) < 2:
        raise ValueError("init='codebook' needs at least 2 tools whose names have known tokens")
    x = torch.stack([books[lv][levels[keep, lv]] for lv in range(len(books))]).sum(0)  # (N, d)
    base64 = base.double()
    y = torch.stack([base64[name_ids[i]].mean(dim=0) for i in keep])  # (N, H)
    w = _ridge_fit(x - x.mean(0), y - y.mean(0), ridge)
    target_norm = base64.norm(dim=1).mean()
    rows = []
    for book in books:
        mapped = book @ w
        norms = mapped.norm(dim=1, keepdim=True).clamp_min(1e-12)
        rows.append((mapped / norms * target_norm).float())
    return rows


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, ridge: float) -> torch.Tensor:
    """argmin_W ||XW - Y||² + λ||W||², λ = ridge · trace(XᵀX)/d.  X (N, d), Y (N, H) -> (d, H)."""
    import torch

    gram = x.T @ x
    lam = ridge * gram.trace() / gram.shape[0]
    eye = torch.eye(gram.shape[0], dtype=gram.dtype)
    w = torch.linalg.solve(gram + lam * eye + 1e-12 * eye, x.T @ y)
    if not torch.isfinite(w).all():
        raise FloatingPointError("codebook init: the fitted linear map is not finite; raise `ridge`")
    return w
