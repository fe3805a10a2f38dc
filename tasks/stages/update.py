"""Incremental LLM update after tools were added (the rebuild path of the finetune stages).

When the store already holds a trained model and the codes only grew (new tools placed
by the same tokenizer, every old code kept), retraining from the base model would repeat
all the work. Instead the first fine-tuning stage continues from that model with an
*update set*: every example that teaches a new tool's code (its memorization example,
retrieval/trajectory examples that answer with it) plus a seeded replay sample of old
examples of the same stage, so that old tools stay retrievable.

    previous_model(...)         the newest complete model of this base model trained on
                                these codes, and the tools it was trained on (from lineage)
    write_update_examples(...)  the update set -> table `sft_update` (sft_examples schema)

Catalog changes (`tasks/stages/lifecycle.py`) take the same path: a tool whose doc was
edited since the previous model keeps its code and its new examples (its memorization
example first) join the update set; a retired tool needs no training (it leaves the
decoding trie), so a rebuild that only retired tools keeps the previous model.

A full retrain (from the base model) happens when there is no previous model (of this
base model), when the codes were retrained (another `codes_version`), or when no tool is
new, changed or retired (e.g. only new queries: the examples changed, so the stages
recompute as before).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from storage import Store, TableRef
from tasks import digests
from tasks.stages.datasets import SFT_EXAMPLES, SFT_EXAMPLES_SCHEMA
from tasks.stages.finetune import CHECKPOINT_KIND, TRAIN_METRICS
from tasks.stages.lifecycle import active_codes, changed_since, retired_tools
from toolweaver.align.models import read_checkpoint_meta

logger = logging.getLogger(__name__)

SFT_UPDATE = "sft_update"


class UpdateConfig(BaseModel):
    """How a rebuild updates the LLM when tools were added."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="False: always retrain the stages from the base model")
    replay_ratio: float = Field(default=1.0, ge=0, description="old examples replayed per new example, per stage")
    seed: int = 0


@dataclass(frozen=True)
class PreviousModel:
    checkpoint_id: str
    known_tools: frozenset[str]  # tools whose codes the model was trained on
    created_at: datetime | None = None  # when it was registered: later doc edits are "changed"


def previous_model(store: Store, last_stage: str, base_model: str) -> PreviousModel | None:
    """The newest final `last_stage` checkpoint (the end of a previous build) of
    `base_model` whose folder exists and that was trained on the current codes_version,
    with the tools it knew."""
    if not (store.exists("checkpoints") and store.exists("codes") and store.exists("lineage")):
        return None
    current = set(store.read("codes", columns=["codes_version"]).column("codes_version").to_pylist())
    rows = [r for r in store.checkpoints(kind=CHECKPOINT_KIND).to_pylist() if r["present"]]
    for row in sorted(rows, key=lambda r: (r["created_at"], r["checkpoint_id"]), reverse=True):
        meta = read_checkpoint_meta(store.root / row["path"])
        same_lineage = meta.get("base_model") == base_model and {meta.get("codes_version")} == current
        if meta.get("stage") == last_stage and meta.get("final") and same_lineage:
            known = _trained_tools(store, row["config_hash"])
            return PreviousModel(row["checkpoint_id"], known, row["created_at"]) if known else None
    return None


def _trained_tools(store: Store, config_hash: str) -> frozenset[str]:
    """Tool ids of the `codes` version a training run read: the lineage of its metrics."""
    rows = store.read("lineage", columns=["table", "config_hash", "inputs"]).to_pylist()
    inputs = [
        dict(json.loads(r["inputs"])) for r in rows if r["table"] == TRAIN_METRICS and r["config_hash"] == config_hash
    ]
    versions = {i["codes"] for i in inputs if "codes" in i}
    if len(versions) != 1:
        logger.warning("cannot tell which codes the model with config %s was trained on (%s)", config_hash, versions)
        return frozenset()
    return frozenset(store.read("codes", version=versions.pop(), columns=["tool_id"]).column("tool_id").to_pylist())


def new_tool_codes(store: Store, known: frozenset[str]) -> dict[str, str]:
    """{tool_id: code} of the coded, active tools the previous model did not know."""
    codes = store.read("codes", columns=["tool_id", "code"]).to_pylist()
    return active_codes(store, {r["tool_id"]: r["code"] for r in codes if r["tool_id"] not in known})


def changed_tool_codes(store: Store, previous: PreviousModel) -> dict[str, str]:
    """{tool_id: code} of the known tools whose doc changed since `previous` was made: they
    keep their code, and their new examples (memorization first) join the update set."""
    if previous.created_at is None:
        return {}
    changed = changed_since(store, previous.created_at) & previous.known_tools
    codes = store.read("codes", columns=["tool_id", "code"]).to_pylist()
    return {r["tool_id"]: r["code"] for r in codes if r["tool_id"] in changed}


def retired_since_model(store: Store, previous: PreviousModel) -> frozenset[str]:
    """Tools the previous model knew that are retired now (the trie drops them: no training)."""
    return retired_tools(store) & previous.known_tools


def write_update_examples(
    store: Store, new_codes: dict[str, str], config: UpdateConfig, *, run_id: str | None = None
) -> tuple[TableRef, dict[str, int]]:
    """Write the update set (examples answering with a new code + replay) to `sft_update`;
    returns its ref and {"<stage>.new"|"<stage>.replay": count}."""
    ref = store.latest(SFT_EXAMPLES)
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no {SFT_EXAMPLES}: run the datasets stage first")
    rows = [r for r in store.read(SFT_EXAMPLES, version=ref.version).to_pylist() if r["split"] == "train"]
    codes = set(new_codes.values())
    new = [r for r in rows if _answers_with(r, codes)]
    old = sorted((r for r in rows if not _answers_with(r, codes)), key=lambda r: r["example_id"])
    rng = random.Random(config.seed)
    chosen, counts = list(new), {}
    for stage in sorted({r["stage"] for r in new}):
        n_new = sum(r["stage"] == stage for r in new)
        pool = [r for r in old if r["stage"] == stage]
        replay = rng.sample(pool, min(len(pool), round(n_new * config.replay_ratio)))
        chosen += replay
        counts |= {f"{stage}.new": n_new, f"{stage}.replay": len(replay)}
    table = pa.Table.from_pylist(sorted(chosen, key=lambda r: r["example_id"]), schema=SFT_EXAMPLES_SCHEMA)
    config_hash = digests.config_hash(config)
    written = store.write(
        SFT_UPDATE, table, run_id=run_id, config_hash=config_hash, inputs=[ref, store.latest("codes")]
    )
    logger.info("update set: %s (sft_update v%d)", counts, written.version)
    return written, counts


def _answers_with(row: dict, codes: set[str]) -> bool:
    """Whether an assistant turn of the example names one of `codes`."""
    return any(
        m["role"] == "assistant" and any(code in "".join(m["content"].split()) for code in codes)
        for m in json.loads(row["conversations"])
    )


def stages_with_examples(store: Store, table: str = SFT_UPDATE) -> set[str]:
    ref = store.latest(table)
    if ref is None:
        return set()
    return set(store.read(table, version=ref.version, columns=["stage"]).column("stage").to_pylist())
