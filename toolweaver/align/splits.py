"""Deterministic split of queries into train / validation / test.

A query's split is a function of its id alone (plus the seed), so it never changes when
other queries are added, and every example built from a query (retrieval, trajectory)
lands in the same split: no query is in two splits by construction. Queries whose
source split is held out (StableToolBench's test instructions) always go to `test`.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Split = Literal["train", "validation", "test"]


class SplitConfig(BaseModel):
    """Seeded per-query split; `validation_fraction` of non-held-out queries go to validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    validation_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    heldout_splits: tuple[str, ...] = ("test",)


def unit_hash(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from sha256(seed, key): stable across runs and machines."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(query_id: str, source_split: str | None, config: SplitConfig) -> Split:
    """The split of one query: `test` if its source split is held out, else seeded hash."""
    if source_split is not None and source_split in config.heldout_splits:
        return "test"
    return "validation" if unit_hash(config.seed, query_id) < config.validation_fraction else "train"


BfclHalf = Literal["train", "heldout"]


def bfcl_half(item_id: str, seed: int = 0) -> BfclHalf:
    """The half of one BFCL question or multi-turn conversation: `train` or `heldout`.

    BFCL ships no training split. Every BFCL training example (retrieval, trajectory)
    comes from the `train` half and every BFCL evaluation from the `heldout` half, so no
    evaluated question was trained on. `item_id` is the question's or conversation's own
    id (BFCL's `id` field, e.g. `multi_turn_base_12`, not the store's query_id with its
    source prefix), so the split does not depend on how the store names queries. Seeded
    hash, like `assign_split`: stable across runs and machines, about half each.
    """
    return "train" if unit_hash(seed, f"bfcl\x00{item_id}") < 0.5 else "heldout"
