"""Stage `finetune`: staged fine-tuning (memorization -> retrieval -> trajectory) over a store.

Each stage reads its `sft_examples` (split `train`) and the `codes` table, starts from the
previous stage's final checkpoint (the first one from the base model with the new
vocabulary added), trains (`toolweaver.align.train`), registers a checkpoint every
`save_every` steps (`kind="llm"`, meta: stage, tokens, codes_version, codes_table_version,
vocab_init, base_model, step, init) and appends its per-step metrics to `train_metrics`
at every checkpoint.

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
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, model_validator

from storage import SCHEMAS, Store, TableRef
from toolweaver.align.atomic import TokenScheme, atomic_tokens, rewrite_codes
from toolweaver.align.collate import encode_all
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
    vocab: VocabConfig = VocabConfig()
    split: str = "train"
    tokens: TokenScheme = "codes"

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


@dataclass(frozen=True)
class CodesInput:
    """The latest `codes` table: one row per tool, all of one codes version."""

    tool_ids: list[str]
    levels: list[list[int]]
    codes: list[str]
    codes_version: str
    ref: TableRef

    @property
    def n_levels(self) -> int:
        return len(self.levels[0])

    def atomic(self) -> dict[str, str]:
        """{code string: atomic token} of every tool (the rewrite map of the atomic scheme)."""
        token_of = atomic_tokens(self.tool_ids)
        return {code: token_of[t] for t, code in zip(self.tool_ids, self.codes, strict=True)}


def read_codes(store: Store) -> CodesInput:
    """The latest `codes` table (rows sorted by tool_id)."""
    ref = store.latest("codes")
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no codes table: run the codes stage first")
    table = store.read("codes", version=ref.version, columns=["tool_id", "levels", "code", "codes_version"]).sort_by(
        "tool_id"
    )
    versions = sorted(set(table.column("codes_version").to_pylist()))
    if len(versions) != 1:
        raise ValueError(f"codes v{ref.version} mixes codes versions {versions}; a model is trained on exactly one")
    columns = table.to_pydict()
    return CodesInput(columns["tool_id"], columns["levels"], columns["code"], versions[0], ref)


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


def _codebook_init_inputs(store: Store, codes: CodesInput) -> dict:
    """`add_code_tokens` arguments of init='codebook': the RQ-VAE codebooks of the codes
    version (its tokenizer checkpoint) and the (levels, name) pairs to fit the map on."""
    from toolweaver.codes import load_rqvae

    rqvae, _ = load_rqvae(store.checkpoint_path(codes.codes_version))
    books = rqvae.quantizer.codebooks.detach().cpu().numpy()
    names = {}
    if store.exists("tools"):
        tools = store.read("tools", columns=["tool_id", "tool_name", "api_name"]).to_pylist()
        names = {t["tool_id"]: f"{t['tool_name']} {t['api_name']}" for t in tools}
    return {
        "codebooks": list(books),
        "fit_levels": np.asarray(codes.levels, dtype=np.int64),
        "fit_names": [names.get(t, t.replace("&&", " ")) for t in codes.tool_ids],
    }


def _codebook_size(store: Store, codes: CodesInput) -> int:
    """K of the codes' tokenizer (its registered meta), so that codes placed later for new
    tools (free slots anywhere in the codebook) have tokens too; without a registered
    tokenizer, the largest index used + 1."""
    used = 1 + max(max(levels) for levels in codes.levels)
    if store.exists("checkpoints"):
        for row in store.checkpoints(kind="rqvae").to_pylist():
            if row["checkpoint_id"] == codes.codes_version:
                return max(used, int(json.loads(row["meta"] or "{}").get("codebook_size") or used))
    return used


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
            extra = _codebook_init_inputs(store, codes) if config.vocab.init == "codebook" else {}
            add_code_tokens(
                tokenizer,
                model,
                n_levels=codes.n_levels,
                codebook_size=_codebook_size(store, codes),
                config=config.vocab,
                **extra,
            )
    new_ids = list(range(old_size, model.get_input_embeddings().weight.shape[0]))
    return model, tokenizer, new_ids


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
    meta = {
        "stage": stage,
        "base_model": config.model,
        "init": init or "base",
        "tokens": config.tokens,
        # The codes the model emits (codes) or whose tools it has tokens for (atomic):
        # tokenizer id + the `codes` table version, so evaluation decodes with exactly these.
        "codes_version": codes.codes_version,
        "codes_table_version": codes.ref.version,
        "vocab_init": _vocab_init(store, init, config),
    }

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
