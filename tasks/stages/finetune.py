"""Stage `finetune`: staged fine-tuning (memorization -> retrieval -> trajectory) over a store.

Each stage reads its `sft_examples` (split `train`) and the `codes` table, starts from the
previous stage's final checkpoint (the first one from the base model with the new
vocabulary added), trains (`toolweaver.align.train`), registers a checkpoint every
`save_every` steps (`kind="llm"`, meta: stage, tokens, codes_version, codes_table_version,
vocab_init, base_model, step, init; exact_match when checked) and appends its per-step
metrics to `train_metrics` at every checkpoint.

Stop when memorised: the memorization stage decodes a seeded sample of `check_tools` of its
tools (trie-constrained top-1, `toolweaver.align.memorize`) every `check_every` steps (0:
once per epoch) and ends at the first check whose exact match reaches `target` (default
0.98), or at its epoch cap; the retrieval stage starts from that final checkpoint.

Token schemes (`tokens`): `codes` (ToolWeaver: the L×K code tokens) or `atomic` (ToolGen:
one new token per tool of the codes table, `toolweaver.align.atomic`). Both train on the
same `sft_examples` rows: for `atomic` every code in them is replaced by its tool's token,
so the pair differs only in the vocabulary.

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
from functools import partial
from pathlib import Path

import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, model_validator

from storage import SCHEMAS, Store, TableRef
from tasks.stages.finetune_inputs import CodesInput, codebook_init_inputs, codebook_size, read_codes
from toolweaver.align.atomic import TokenScheme, rewrite_codes
from toolweaver.align.collate import encode_all
from toolweaver.align.memorize import exact_match, memorization_probe
from toolweaver.align.models import (
    DEFAULT_MODEL,
    load_checkpoint,
    load_model_and_tokenizer,
    read_checkpoint_meta,
)
from toolweaver.align.train import (
    RESUMABLE_FIELDS,
    STAGES,
    Stage,
    StepMetrics,
    TrainConfig,
    metrics_record,
    prepare_model,
    total_steps,
    train,
)
from toolweaver.align.vocab import VocabConfig, add_atomic_tokens, add_code_tokens
from toolweaver.device import resolve_device

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "llm"
SFT_EXAMPLES = "sft_examples"
TRAIN_METRICS = "train_metrics"
TRAIN_METRICS_SCHEMA = SCHEMAS[TRAIN_METRICS]


class FinetuneConfig(BaseModel):
    """What to fine-tune. `train` holds the shared settings; each stage runs with its own
    `stage` field and the overrides in `per_stage` (e.g. more epochs for memorization)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = DEFAULT_MODEL
    stages: tuple[Stage, ...] = STAGES
    train: TrainConfig = TrainConfig()
    per_stage: dict[Stage, dict[str, object]] = {}
    # `codebook` (RQ-VAE codebooks projected into the embedding space) by default: on ToolLens
    # it memorises faster and retrieves better than the paper's `random` (docs/results.md).
    # Atomic tokens have no code levels: their default is `random` (see the validator).
    vocab: VocabConfig = VocabConfig(init="codebook")
    split: str = "train"
    tokens: TokenScheme = "codes"

    @model_validator(mode="before")
    @classmethod
    def _default_init_for_tokens(cls, data: object) -> object:
        """A vocab given without `init` takes the scheme's default: `codebook` for codes,
        `random` for atomic tokens (so `vocab={"seed": 1}` does not fall back to VocabConfig's)."""
        if not isinstance(data, dict):
            return data
        init = "random" if data.get("tokens") == "atomic" else "codebook"
        vocab = data.get("vocab")
        if vocab is None:
            return {**data, "vocab": VocabConfig(init=init)}
        if isinstance(vocab, dict) and "init" not in vocab:
            return {**data, "vocab": {**vocab, "init": init}}
        if isinstance(vocab, VocabConfig) and "init" not in vocab.model_fields_set:
            return {**data, "vocab": vocab.model_copy(update={"init": init})}
        return data

    @model_validator(mode="after")
    def _init_fits_tokens(self) -> FinetuneConfig:
        if self.tokens == "atomic" and self.vocab.init == "codebook":
            raise ValueError(
                "vocab init 'codebook' needs code levels: use init 'random' or 'mean' with tokens='atomic'"
            )
        return self

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


def read_examples(
    store: Store, stage: Stage, split: str, table: str = SFT_EXAMPLES
) -> tuple[list[list[dict]], TableRef]:
    """Conversations of one stage and split from the latest `table` (by example_id)."""
    ref = store.latest(table)
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no {table} table: run `toolweaver datasets` first")
    rows = store.read(table, version=ref.version, columns=["example_id", "stage", "split", "conversations"]).to_pylist()
    chosen = sorted((r for r in rows if r["stage"] == stage and r["split"] == split), key=lambda r: r["example_id"])
    if not chosen:
        raise ValueError(f"{table} v{ref.version} has no {stage!r} examples in split {split!r}")
    return [json.loads(r["conversations"]) for r in chosen], ref


def stage_hash(config: FinetuneConfig, stage: Stage, inputs: Sequence[TableRef], init: str) -> str:
    """Run-independent identity of a stage: its settings (device and checkpoint cadence
    excluded), the content digests of its inputs and the checkpoint it starts from."""
    train = config.stage_config(stage).model_dump(mode="json", exclude=set(RESUMABLE_FIELDS))
    payload = {
        "model": config.model,
        "vocab": config.vocab.model_dump(mode="json"),
        "split": config.split,
        "train": train,
        "inputs": sorted((r.table, r.digest) for r in inputs),
        "init": init,
    }
    if config.tokens != "codes":  # only then: stages trained before the option existed keep their hash
        payload["tokens"] = config.tokens
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


def _flush_metrics(
    store: Store, rows: list[dict], inputs: Sequence[TableRef], config_hash: str, run_id: str
) -> TableRef | None:
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


def _check_init(init: str, meta: dict, config: FinetuneConfig, codes: CodesInput) -> None:
    """A stage continues its init checkpoint only with the same codes and token scheme."""
    tokens = meta.get("tokens", "codes")
    if meta.get("codes_version") != codes.codes_version or tokens != config.tokens:
        raise ValueError(
            f"checkpoint {init} was trained with {tokens} tokens on codes {meta.get('codes_version')!r}, but this "
            f"stage uses {config.tokens} tokens on codes {codes.codes_version!r}; start again from the base model "
            "(or re-run the earlier stages)"
        )


def _start_model(store: Store, config: FinetuneConfig, init: str | None, codes: CodesInput, device):
    """(model, tokenizer, new token ids) at the start of a stage."""
    if init is not None:
        folder = store.checkpoint_path(init)
        _check_init(init, read_checkpoint_meta(folder), config, codes)
        model, tokenizer = load_checkpoint(folder, device=device, trainable=True)
        return model, tokenizer, []
    model, tokenizer = load_model_and_tokenizer(config.model, device=device)
    old_size = model.get_input_embeddings().weight.shape[0]
    # Resizing draws rows from the global RNG (rows the vocabulary init then overwrites,
    # unless the tokenizer already knew the tokens): seed it so a stage is reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.vocab.seed)
        if config.tokens == "atomic":
            add_atomic_tokens(tokenizer, model, sorted(codes.atomic().values()), config=config.vocab)
        else:
            extra = codebook_init_inputs(store, codes) if config.vocab.init == "codebook" else {}
            add_code_tokens(
                tokenizer,
                model,
                n_levels=codes.n_levels,
                codebook_size=codebook_size(store, codes),
                config=config.vocab,
                **extra,
            )
    new_ids = list(range(old_size, model.get_input_embeddings().weight.shape[0]))
    return model, tokenizer, new_ids


def _memorized_check(
    tokenizer, conversations: list[list[dict]], config: TrainConfig
) -> Callable[[torch.nn.Module], float] | None:
    """The memorization stage stops when exact match on a seeded sample of its tools reaches
    `config.target`; other stages (and target None) train to their step cap."""
    if config.stage != "memorization" or config.target is None:
        return None
    probe = memorization_probe(tokenizer, conversations, sample=config.check_tools, seed=config.seed)
    return partial(exact_match, probe=probe)


def _vocab_init(store: Store, init: str | None, config: FinetuneConfig) -> str:
    """How the new rows of this chain of stages were initialised (the first stage's setting)."""
    if init is None:
        return config.vocab.init
    return str(read_checkpoint_meta(store.checkpoint_path(init)).get("vocab_init", "unknown"))


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
    codes = read_codes(store)
    if config.tokens == "atomic":
        token_of_code = codes.atomic()
        conversations = [rewrite_codes(c, token_of_code, codes.n_levels) for c in conversations]
    inputs = [examples_ref, codes.ref]
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
        model, tokenizer, new_ids = _start_model(store, config, init, codes, device)
    model = prepare_model(model, new_ids, train_config)
    examples = encode_all(tokenizer, conversations, max_length=train_config.max_length)
    check = _memorized_check(tokenizer, conversations, train_config)
    meta = {
        "stage": stage,
        "base_model": config.model,
        "init": init or "base",
        "tokens": config.tokens,
        # The codes the model emits (codes) or whose tools it has tokens for (atomic):
        # code-model id + the `codes` table version, so evaluation decodes with exactly these.
        "codes_version": codes.codes_version,
        "codes_table_version": codes.ref.version,
        "vocab_init": _vocab_init(store, init, config),
    }

    pending: list[dict] = []
    registered: dict[int, str] = {}
    metrics_ref: list[TableRef | None] = [None]
    last_check: dict[str, float] = {}  # the newest stop check, recorded in the checkpoint rows

    steps_total = total_steps(len(examples), train_config)

    def on_step(m: StepMetrics) -> None:
        pending.append({**metrics_record(m), "run_id": run_id, "config_hash": config_hash})
        if m.exact_match is not None:
            last_check.update(exact_match=m.exact_match, exact_match_step=m.step)
        if progress is not None:
            progress(m.step, steps_total)

    def on_checkpoint(folder: Path, step: int) -> None:
        # Metrics first: a checkpoint never exists without the metrics of the steps it holds.
        metrics_ref[0] = _flush_metrics(store, pending, inputs, config_hash, run_id)
        registered[step] = store.register_checkpoint(
            CHECKPOINT_KIND,
            folder,
            run_id=run_id,
            config_hash=config_hash,
            meta={**meta, **last_check, "step": step},
            move=True,
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
            check=check,
        )
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return StageOutcome(
        stage, registered[result.steps], result.steps, resume[0] if resume else 0, result.tokens_per_s, metrics_ref[0]
    )


def finetune(
    store: Store, config: FinetuneConfig, *, init: str | None = None, run_id: str = "local"
) -> list[StageOutcome]:
    """Every configured stage in order, each starting from the previous stage's final checkpoint."""
    outcomes = []
    for stage in config.stages:
        outcome = finetune_stage(store, stage, config, init=init, run_id=run_id)
        outcomes.append(outcome)
        init = outcome.checkpoint_id
        logger.info("stage %s -> checkpoint %s (%d steps)", stage, outcome.checkpoint_id, outcome.steps)
    return outcomes
