"""Build profiles: `quick` (CPU, a subset sized for a ≤ 15 minute build on 2 cores)
and `full` (CUDA, the whole catalog).

A profile is a frozen config. `resolve_profile("auto")` picks `full` when CUDA is
present and `quick` otherwise; asking for `full` without CUDA fails loudly instead of
silently training on the CPU for hours.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tasks.stages.codes import TokenizeConfig
from tasks.stages.finetune import FinetuneConfig
from toolweaver.align.datasets import DatasetConfig
from toolweaver.align.train import TrainConfig
from toolweaver.codes.embed import EmbedConfig

logger = logging.getLogger(__name__)

_BFCL_PREFIX = "BFCL_v4_"


class Profile(BaseModel):
    """What a build profile fixes: device, how much of the embedded BFCL data, and each
    stage's config. Stage configs default to their own schema defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="'quick', 'full', or a custom profile's name (tests use tiny ones)")
    device: Literal["cpu", "cuda"]
    description: str
    bfcl_categories: tuple[str, ...] | None = Field(
        default=None,
        description="BFCL question categories to keep (file stems without BFCL_v4_); None = all. "
        "Applies to `bfcl` sources only; other sources are used whole.",
    )
    bfcl_max_questions: int | None = Field(
        default=None, ge=1, description="keep the first N questions of each kept BFCL file; None = all"
    )
    tokenize: TokenizeConfig = TokenizeConfig()
    datasets: DatasetConfig = DatasetConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    eval_methods: tuple[str, ...] = Field(default=("bm25", "dense"), min_length=1)
    eval_llm: bool = Field(default=True, description="also evaluate the fine-tuned model ('toolweaver')")

    def on_device(self) -> Profile:
        """The profile with its `device` in every stage config: the one place a build's
        device is decided (the stage configs' own `device` fields are overridden)."""
        tokenize = self.tokenize.model_copy(
            update={
                "embed": self.tokenize.embed.model_copy(update={"device": self.device}),
                "rqvae": self.tokenize.rqvae.model_copy(update={"device": self.device}),
            }
        )
        finetune = self.finetune.model_copy(
            update={"train": self.finetune.train.model_copy(update={"device": self.device})}
        )
        return self.model_copy(update={"tokenize": tokenize, "finetune": finetune})

    @property
    def bfcl_subset(self) -> BfclSubset | None:
        if self.bfcl_categories is None and self.bfcl_max_questions is None:
            return None
        return BfclSubset(categories=self.bfcl_categories, max_questions=self.bfcl_max_questions)


class BfclSubset(BaseModel):
    """A deterministic cut of the BFCL data folder (same layout, fewer questions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: tuple[str, ...] | None = None
    max_questions: int | None = Field(default=None, ge=1)


# The quick subset: simple single-call questions plus multi-turn conversations (which
# bring the 161 multi-turn function docs and the trajectories): ≈ 250 tools, 200
# queries. BFCL questions are all held-out test queries, so only the memorization
# stage has training examples; 40 LoRA steps of batch 8 (≈ 1.3 epochs over the tools,
# ≈ 30k tokens at SmolLM2's ≈ 100 tokens/s on 2 idle cores ≈ 5 min) keep the whole
# build near 15 minutes; a checkpoint every 10 steps lets a killed run resume. Too
# few steps for memorization to converge: the quick profile shows the pipeline
# working end to end, not the method's accuracy.
QUICK = Profile(
    name="quick",
    device="cpu",
    description="CPU: BFCL simple_python + multi_turn_base, first 100 questions each (≈ 250 tools, 200 queries), "
    "MiniLM, SmolLM2-135M memorization (40 LoRA steps); ≤ 15 min on 2 cores",
    bfcl_categories=("simple_python", "multi_turn_base"),
    bfcl_max_questions=100,
    tokenize=TokenizeConfig(embed=EmbedConfig(show_progress=False)),
    finetune=FinetuneConfig(stages=("memorization",), train=TrainConfig(max_steps=40, batch_size=8, save_every=10)),
)
FULL = Profile(
    name="full",
    device="cuda",
    description="CUDA: all of BFCL (≈ 1.9k tools, 3.3k queries), MiniLM, SmolLM2-135M memorization (3 epochs, bf16)",
    tokenize=TokenizeConfig(embed=EmbedConfig(show_progress=False)),
    finetune=FinetuneConfig(stages=("memorization",), train=TrainConfig(epochs=3, batch_size=32, save_every=200)),
)
PROFILES: dict[str, Profile] = {p.name: p for p in (QUICK, FULL)}


def write_bfcl_subset(src: Path, dest: Path, subset: BfclSubset) -> Path:
    """Copy a cut of the BFCL data folder `src` into `dest`, keeping its layout.

    Question files `BFCL_v4_<category>.json` of the kept categories (those of the
    subset that `src` has; none at all is an error) are cut to their
    first `max_questions` lines; their `possible_answer/` files keep the answers of the
    kept questions; `multi_turn_func_doc/` is copied whole (multi-turn questions name
    its classes). Files are rewritten only when their bytes differ, so an unchanged
    subset keeps its content digest and mtimes.
    """
    wanted: dict[str, bytes] = {}
    for question_file in sorted(src.glob(f"{_BFCL_PREFIX}*.json")):
        category = question_file.stem.removeprefix(_BFCL_PREFIX)
        if subset.categories is not None and category not in subset.categories:
            continue
        lines = question_file.read_bytes().splitlines(keepends=True)
        kept = lines[: subset.max_questions] if subset.max_questions else lines
        wanted[question_file.name] = b"".join(kept)
        answers = src / "possible_answer" / question_file.name
        if answers.is_file():
            ids = {_line_id(line) for line in kept}
            keep = [line for line in answers.read_bytes().splitlines(keepends=True) if _line_id(line) in ids]
            wanted[f"possible_answer/{question_file.name}"] = b"".join(keep)
    kept = {n.removeprefix(_BFCL_PREFIX).removesuffix(".json") for n in wanted}
    missing = sorted(set(subset.categories or ()) - kept)
    if not kept:
        raise ValueError(f"none of the BFCL categories {subset.categories} is in {src}: is it a bfcl_eval data folder?")
    if missing:
        # A user's own cut of BFCL may lack some categories: use what is there, say so.
        logger.warning("BFCL categories %s not in %s; using %s", missing, src, sorted(kept))
    for doc in sorted((src / "multi_turn_func_doc").glob("*.json")):
        wanted[f"multi_turn_func_doc/{doc.name}"] = doc.read_bytes()
    for rel, data in wanted.items():
        target = dest / rel
        if not (target.is_file() and target.read_bytes() == data):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    stale = [p for p in dest.rglob("*") if p.is_file() and p.relative_to(dest).as_posix() not in wanted]
    for p in stale:
        p.unlink()
    return dest


def _line_id(line: bytes) -> str | None:
    """The `id` of a JSON-lines record, or None for a line that is not a JSON object."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return str(record.get("id")) if isinstance(record, dict) else None


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_profile(name: Literal["quick", "full", "auto"]) -> Profile:
    """The profile called `name`; `auto` = `full` with CUDA, else `quick`."""
    if name == "auto":
        chosen = FULL if cuda_available() else QUICK
        logger.info("profile auto -> %s (%s)", chosen.name, chosen.description)
        return chosen
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of quick, full, auto")
    profile = PROFILES[name]
    if profile.device == "cuda" and not cuda_available():
        raise RuntimeError(
            "profile 'full' needs a CUDA GPU and torch.cuda.is_available() is False; "
            "use --profile quick on a CPU machine"
        )
    return profile
