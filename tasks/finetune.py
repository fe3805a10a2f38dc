"""Stage `finetune`: staged fine-tuning (memorization -> retrieval -> trajectory) over a store.

Each stage reads its `sft_examples` (split `train`) and the `codes` table, starts from the
previous stage's final checkpoint (the first one from the base model with the code
vocabulary added), trains (`toolweaver.align.train`), registers a checkpoint every
`save_every` steps (`kind="llm"`, meta: stage, codes_version, base_model, step, init) and
appends its per-step metrics to `train_metrics` at every checkpoint.

Resume: a stage's checkpoints carry a config hash (settings + input digests + start
checkpoint). Re-running the same stage finds its newest surviving checkpoint with that
hash: a final one is returned as is (the stage is done); otherwise training resumes
from it, without repeating optimizer steps. Retention keeps the newest `keep_last`
checkpoint folders per stage and hash (older folders are deleted; their rows stay in
the `checkpoints` table, and `checkpoint_path` then reports them missing).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict

from storage import Store, TableRef
from storage.schemas import register_schema
from toolweaver.align.collate import encode_all
from toolweaver.align.models import DEFAULT_MODEL, load_checkpoint, load_model_and_tokenizer, read_checkpoint_meta, resolve_device
from toolweaver.align.train import STAGES, Stage, StepMetrics, TrainConfig, metrics_record, prepare_model, total_steps, train
from toolweaver.align.vocab import VocabConfig, add_code_tokens

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "llm"
SFT_EXAMPLES = "sft_examples"
TRAIN_METRICS = "train_metrics"
TRAIN_METRICS_SCHEMA = register_schema(
    TRAIN_METRICS,
    pa.schema(
        [
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("config_hash", pa.string(), nullable=False),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("step", pa.int64(), nullable=False),
            pa.field("epoch", pa.int64(), nullable=False),
            pa.field("loss", pa.float64(), nullable=False),
            pa.field("lr", pa.float64(), nullable=False),
            pa.field("grad_norm", pa.float64(), nullable=False),
            pa.field("tokens", pa.int64(), nullable=False),
            pa.field("loss_tokens", pa.int64(), nullable=False),
            pa.field("step_s", pa.float64(), nullable=False),
            pa.field("tokens_per_s", pa.float64(), nullable=False),
        ]
    ),
)


class FinetuneConfig(BaseModel):
    """What to fine-tune. `train` holds the shared settings; each stage runs with its own
    `stage` field and the overrides in `per_stage` (e.g. more epochs for memorization)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = DEFAULT_MODEL
    stages: tuple[Stage, ...] = STAGES
    train: TrainConfig = TrainConfig()
    per_stage: dict[Stage, dict[str, object]] = {}
    vocab: VocabConfig = VocabConfig()
    split: str = "train"

    def stage_config(self, stage: Stage) -> TrainConfig:
        return TrainConfig(**{**self.train.model_dump(), **self.per_stage.get(stage, {}), "stage": stage})


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    checkpoint_id: str
    steps: int
    resumed_from_step: int  # 0 = started afresh; == steps when the stage was already done
    tokens_per_s: float
    metrics: TableRef | None


# --------------------------------------------------------------------------- inputs


def read_examples(store: Store, stage: Stage, split: str, table: str = SFT_EXAMPLES) -> tuple[list[list[dict]], TableRef]:
    """Conversations of one stage and split from the latest `table` (by example_id)."""
    ref = store.latest(table)
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no {table} table: run `toolweaver datasets` first")
    rows = store.read(table, version=ref.version, columns=["example_id", "stage", "split", "conversations"]).to_pylist()
    chosen = sorted((r for r in rows if r["stage"] == stage and r["split"] == split), key=lambda r: r["example_id"])
    if not chosen:
        raise ValueError(f"{table} v{ref.version} has no {stage!r} examples in split {split!r}")
    return [json.loads(r["conversations"]) for r in chosen], ref


def read_codes(store: Store) -> tuple[list[list[int]], str, TableRef]:
    """(levels of every tool, codes_version, ref) of the latest `codes` table."""
    ref = store.latest("codes")
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no codes table: run the codes stage first")
    table = store.read("codes", version=ref.version, columns=["levels", "codes_version"])
    versions = sorted(set(table.column("codes_version").to_pylist()))
    if len(versions) != 1:
        raise ValueError(f"codes v{ref.version} mixes codes versions {versions}; a model is trained on exactly one")
    return table.column("levels").to_pylist(), versions[0], ref


def stage_hash(config: FinetuneConfig, stage: Stage, inputs: Sequence[TableRef], init: str) -> str:
    """Run-independent identity of a stage: its settings (device and checkpoint cadence
    excluded), the content digests of its inputs and the checkpoint it starts from."""
    train = config.stage_config(stage).model_dump(mode="json", exclude={"device", "save_every", "keep_last"})
    payload = {
        "model": config.model,
        "vocab": config.vocab.model_dump(mode="json"),
        "split": config.split,
        "train": train,
        "inputs": sorted((r.table, r.digest) for r in inputs),
        "init": init,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- checkpoints


def stage_checkpoints(store: Store, stage: Stage, config_hash: str) -> list[tuple[int, str, Path]]:
    """(step, checkpoint_id, folder) of this stage+hash whose folders still exist, oldest first."""
    if not store.exists("checkpoints"):
        return []
    found = []
    for row in store.checkpoints(kind=CHECKPOINT_KIND).to_pylist():
        meta = json.loads(row["meta"])
        if row["config_hash"] != config_hash or meta.get("stage") != stage:
            continue
        folder = store.root / row["path"]
        if folder.is_dir():
            found.append((int(meta["step"]), row["checkpoint_id"], folder))
    return sorted(found)


def apply_retention(store: Store, stage: Stage, config_hash: str, keep_last: int) -> None:
    for step, checkpoint_id, folder in stage_checkpoints(store, stage, config_hash)[:-keep_last]:
        shutil.rmtree(folder)
        logger.info("retention: removed checkpoint %s (stage %s, step %d)", checkpoint_id, stage, step)


def _flush_metrics(store: Store, rows: list[dict], inputs: Sequence[TableRef], config_hash: str, run_id: str) -> TableRef | None:
    if not rows:
        return store.latest(TRAIN_METRICS)
    ref = store.write(
        TRAIN_METRICS,
        pa.Table.from_pylist(rows, schema=TRAIN_METRICS_SCHEMA),
        mode="append",
        run_id=run_id,
        config_hash=config_hash,
        inputs=inputs,
    )
    rows.clear()
    return ref


# --------------------------------------------------------------------------- stage


def _start_model(store: Store, config: FinetuneConfig, init: str | None, codes: list[list[int]], codes_version: str, device):
    """(model, tokenizer, new token ids) at the start of a stage."""
    if init is not None:
        folder = store.checkpoint_path(init)
        meta = read_checkpoint_meta(folder)
        if meta.get("codes_version") != codes_version:
            raise ValueError(
                f"checkpoint {init} was trained on codes {meta.get('codes_version')!r} but the store now has "
                f"{codes_version!r}; start again from the base model (or re-run the earlier stages)"
            )
        model, tokenizer = load_checkpoint(folder, device=device, trainable=True)
        return model, tokenizer, []
    model, tokenizer = load_model_and_tokenizer(config.model, device=device)
    old_size = model.get_input_embeddings().weight.shape[0]
    n_levels = len(codes[0])
    codebook_size = 1 + max(max(levels) for levels in codes)
    # Resizing draws rows from the global RNG (rows the vocabulary init then overwrites,
    # unless the tokenizer already knew the tokens): seed it so a stage is reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.vocab.seed)
        add_code_tokens(tokenizer, model, n_levels=n_levels, codebook_size=codebook_size, config=config.vocab)
    new_ids = list(range(old_size, model.get_input_embeddings().weight.shape[0]))
    return model, tokenizer, new_ids


def finetune_stage(
    store: Store,
    stage: Stage,
    config: FinetuneConfig,
    *,
    init: str | None = None,
    run_id: str = "local",
    progress: Callable[[int, int], None] | None = None,
    examples_table: str = SFT_EXAMPLES,
) -> StageOutcome:
    """Train one stage from `init` (a checkpoint id; None = the base model) and return its
    final checkpoint. Resumes or re-uses a previous run of the same stage (see module doc).
    `progress(step, total_steps)` is called after every optimizer step (e.g. a Prefect
    progress artifact); a resumed run reports from its resume step on. `examples_table`:
    a table with the `sft_examples` schema to train on instead (a rebuild's update set)."""
    train_config = config.stage_config(stage)
    conversations, examples_ref = read_examples(store, stage, config.split, examples_table)
    codes, codes_version, codes_ref = read_codes(store)
    inputs = [examples_ref, codes_ref]
    config_hash = stage_hash(config, stage, inputs, init or f"base:{config.model}")
    previous = stage_checkpoints(store, stage, config_hash)
    if previous and read_checkpoint_meta(previous[-1][2]).get("final"):
        step, checkpoint_id, _ = previous[-1]
        logger.info("stage %s already trained (%s, %d steps): reusing it", stage, checkpoint_id, step)
        return StageOutcome(stage, checkpoint_id, step, step, 0.0, store.latest(TRAIN_METRICS))
    device = resolve_device(train_config.device)
    resume = previous[-1] if previous else None
    if resume is not None:
        model, tokenizer = load_checkpoint(resume[2], device=device, trainable=True)
        new_ids: list[int] = []
    else:
        model, tokenizer, new_ids = _start_model(store, config, init, codes, codes_version, device)
    model = prepare_model(model, new_ids, train_config)
    examples = encode_all(tokenizer, conversations, max_length=train_config.max_length)
    meta = {"stage": stage, "codes_version": codes_version, "base_model": config.model, "init": init or "base"}

    pending: list[dict] = []
    registered: dict[int, str] = {}
    metrics_ref: list[TableRef | None] = [None]

    steps_total = total_steps(len(examples), train_config)

    def on_step(m: StepMetrics) -> None:
        pending.append({**metrics_record(m), "run_id": run_id, "config_hash": config_hash})
        if progress is not None:
            progress(m.step, steps_total)

    def on_checkpoint(folder: Path, step: int) -> None:
        # Metrics first: a checkpoint never exists without the metrics of the steps it holds.
        metrics_ref[0] = _flush_metrics(store, pending, inputs, config_hash, run_id)
        registered[step] = store.register_checkpoint(
            CHECKPOINT_KIND, folder, run_id=run_id, config_hash=config_hash, meta={**meta, "step": step}, move=True
        )
        apply_retention(store, stage, config_hash, train_config.keep_last)

    with tempfile.TemporaryDirectory(prefix=f"finetune-{stage}-") as work:
        result = train(
            model,
            tokenizer,
            examples,
            train_config,
            device=device,
            out_dir=Path(work),
            meta=meta,
            resume_from=resume[2] if resume else None,
            on_step=on_step,
            on_checkpoint=on_checkpoint,
        )
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return StageOutcome(stage, registered[result.steps], result.steps, resume[0] if resume else 0, result.tokens_per_s, metrics_ref[0])


def finetune(store: Store, config: FinetuneConfig, *, init: str | None = None, run_id: str = "local") -> list[StageOutcome]:
    """Every configured stage in order, each starting from the previous stage's final checkpoint."""
    outcomes = []
    for stage in config.stages:
        outcome = finetune_stage(store, stage, config, init=init, run_id=run_id)
        outcomes.append(outcome)
        init = outcome.checkpoint_id
        logger.info("stage %s -> checkpoint %s (%d steps)", stage, outcome.checkpoint_id, outcome.steps)
    return outcomes
