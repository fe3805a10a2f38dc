"""Supervised fine-tuning of a causal LM on tokenised conversations: config, model preparation,
the training step, the loop, and checkpoints that resume exactly.

- `lora` (default): peft LoRA on the attention/MLP projections plus trainable rows for the NEW
  tokens only (peft `trainable_token_indices`, which also covers a tied output head). The base
  vocabulary rows are never written: the adapter keeps the new rows on the side.
- `full`: every weight trains.

A checkpoint is a folder: `save_pretrained` output (adapter or full model, with the resized
vocabulary) + tokenizer + `optimizer.safetensors` / `optimizer.json` + `rng.safetensors` +
`trainer_state.json`. Nothing is pickled. The data order is a pure function of (seed, epoch),
so a run resumed from the checkpoint after step s continues with step s + 1 on exactly the
batches an uninterrupted run would have used, and no optimizer step is repeated.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from toolweaver.align.collate import IGNORE_INDEX, Encoded, collate
from toolweaver.align.models import CHECKPOINT_META, CausalLM, embedding_rows, to_device, write_checkpoint_meta

logger = logging.getLogger(__name__)

Stage = Literal["memorization", "retrieval", "trajectory"]
STAGES: tuple[Stage, ...] = ("memorization", "retrieval", "trajectory")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRAINER_STATE = "trainer_state.json"
# Fields that may differ between a run and its resumption without changing what it computes.
RESUMABLE_FIELDS = frozenset({"device", "save_every", "keep_last"})


class TrainConfig(BaseModel):
    """One fine-tuning stage. `max_steps`, when set, overrides `epochs` (the data cycles)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: Stage = "memorization"
    mode: Literal["lora", "full"] = "lora"
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    epochs: int = Field(default=1, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    max_length: int = Field(default=256, ge=8)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    group_by_length: bool = True
    lora_r: int = Field(default=16, ge=1)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0, lt=1)
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    train_new_tokens: bool = True
    save_every: int = Field(default=0, ge=0)  # optimizer steps between checkpoints; 0 = only the final one
    keep_last: int = Field(default=2, ge=1)  # checkpoints kept per stage (the final one always)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    seed: int = 0
    device: str = "auto"

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.mode == "full" and not self.train_new_tokens:
            raise ValueError("mode='full' trains every row; train_new_tokens=False only applies to mode='lora'")
        if self.mode == "lora" and not self.lora_targets:
            raise ValueError("mode='lora' needs lora_targets (module names such as 'q_proj'), or use mode='full'")
        if self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must be < max_steps={self.max_steps}")
        return self


@dataclass(frozen=True)
class StepMetrics:
    """What one optimizer step did. `tokens` counts non-pad input tokens."""

    stage: str
    step: int
    epoch: int
    loss: float
    lr: float
    grad_norm: float
    tokens: int
    loss_tokens: int
    step_s: float
    tokens_per_s: float


@dataclass(frozen=True)
class TrainResult:
    final_checkpoint: Path
    steps: int
    tokens: int
    train_s: float  # time inside training steps only (no checkpoint I/O)
    tokens_per_s: float
    last_loss: float


# --------------------------------------------------------------------------- model


def _module_name(model: torch.nn.Module, module: torch.nn.Module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name
    raise ValueError(f"module {type(module).__name__} is not part of the model")


def new_token_targets(model: PreTrainedModel, new_token_ids: Sequence[int]) -> dict[str, list[int]]:
    """peft `trainable_token_indices` for the new rows: the input embedding, plus the output
    head when it is a separate matrix (a tied head follows the input embedding in peft)."""
    ids = sorted(int(i) for i in new_token_ids)
    embed = model.get_input_embeddings()
    targets = {_module_name(model, embed): ids}
    head = model.get_output_embeddings()
    if head is not None and head.weight is not embed.weight:
        targets[_module_name(model, head)] = ids
    return targets


def prepare_model(model: CausalLM, new_token_ids: Sequence[int], config: TrainConfig) -> CausalLM:
    """Make the parameters that `config.mode` trains trainable (and only those).

    A model that is already a peft model (resumed, or the previous stage's) keeps its adapter."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if config.mode == "full":
        if isinstance(model, PeftModel):
            raise ValueError("mode='full' was asked for but the model carries a LoRA adapter; merge it first")
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    if isinstance(model, PeftModel):
        return model
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets),
        trainable_token_indices=(
            new_token_targets(model, new_token_ids) if config.train_new_tokens and new_token_ids else None
        ),
        task_type="CAUSAL_LM",
    )
    # peft initialises lora_A from the global RNG: seed it so that the same config gives the
    # same adapter, and restore the caller's RNG afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return get_peft_model(model, lora)


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("the model has no trainable parameters; call prepare_model first")
    return parameters


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(trainable_parameters(model), lr=config.lr, weight_decay=config.weight_decay)


def lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (1-based): linear warmup, then the schedule."""
    if step <= config.warmup_steps:
        return config.lr * step / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    floor = config.lr * config.min_lr_ratio
    if config.schedule == "linear":
        return floor + (config.lr - floor) * (1 - progress)
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def autocast_for(config: TrainConfig, device: torch.device) -> AbstractContextManager:
    """bf16 autocast on CUDA (weights stay fp32); exact fp32 elsewhere."""
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return nullcontext()
    if device.type != "cuda":
        raise ValueError(f"precision='bf16' is supported on CUDA only here (device is {device}); use 'auto' or 'fp32'")
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


# --------------------------------------------------------------------------- data order


def epoch_batches(lengths: Sequence[int], config: TrainConfig, epoch: int) -> list[list[int]]:
    """Micro-batches (lists of example indices) of one epoch; a pure function of (seed, epoch).

    With `group_by_length`, examples are shuffled, sorted by length inside windows of
    64 batches (less padding), and the batches are shuffled again."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = config.batch_size
    if not config.group_by_length:
        return [order[i : i + size] for i in range(0, len(order), size)]
    window = size * 64
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def steps_per_epoch(n_examples: int, config: TrainConfig) -> int:
    n_batches = math.ceil(n_examples / config.batch_size)
    return math.ceil(n_batches / config.grad_accum)


def total_steps(n_examples: int, config: TrainConfig) -> int:
    return config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch(n_examples, config)


def step_batches(lengths: Sequence[int], config: TrainConfig, step: int) -> tuple[int, list[list[int]]]:
    """(epoch, micro-batches) of optimizer step `step` (1-based)."""
    per_epoch = steps_per_epoch(len(lengths), config)
    epoch, index = divmod(step - 1, per_epoch)
    batches = epoch_batches(lengths, config, epoch)
    return epoch, batches[index * config.grad_accum : (index + 1) * config.grad_accum]


def collate_left(batch: Sequence[Encoded], *, pad_id: int) -> dict[str, torch.Tensor]:
    """Left-padded `input_ids`, `attention_mask`, `labels`, `position_ids` (B, T).

    Left padding puts every target near the end of the row, so the LM head only has to
    run on the last few positions (see `train_step`)."""
    padded = collate(batch, pad_id=pad_id, side="left")
    # Positions count real tokens only, so a left-padded row sees the same positions as unpadded.
    padded["position_ids"] = (padded["attention_mask"].cumsum(dim=1) - 1).clamp(min=0)
    return padded


# --------------------------------------------------------------------------- step


def microbatch_loss_sum(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over the label tokens of one micro-batch.

    The LM head runs only on the positions from the first one that predicts a label onwards
    (`logits_to_keep`): with left padding that is a few positions instead of T, which saves
    most of the (B, T, V) logits on a large vocabulary."""
    labels = batch["labels"]
    targets = labels[:, 1:]
    has_target = (targets != IGNORE_INDEX).any(dim=0).nonzero()
    if has_target.numel() == 0:
        raise ValueError("micro-batch without any label token")
    keep = targets.shape[1] - int(has_target[0])
    # Position t predicts token t + 1: the last `keep` targets need the `keep` logits before
    # the final position (whose prediction has no target).
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep + 1,
    )
    logits = out.logits[:, :-1, :]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets[:, -keep:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def train_step(
    model: torch.nn.Module,
    batches: Sequence[Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    max_grad_norm: float | None,
    autocast: AbstractContextManager,
) -> tuple[float, float]:
    """One optimizer step over gradient-accumulated micro-batches -> (mean token loss, grad norm).

    The loss is normalised by the label tokens of the whole step, so accumulation over k
    micro-batches gives the same gradient as one batch k times larger."""
    n_targets = sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for b in batches)
    total = 0.0
    for batch in batches:
        with autocast:
            loss_sum = microbatch_loss_sum(model, batch)
        (loss_sum / n_targets).backward()
        total += loss_sum.item()  # a CPU-GPU sync point, once per micro-batch
    if not math.isfinite(total):
        raise FloatingPointError(f"non-finite loss {total}; lower lr or check the data")
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm or float("inf"))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total / n_targets, float(norm)


# --------------------------------------------------------------------------- checkpoints


def _optimizer_to_files(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Optimizer state without pickle: tensors to safetensors, everything else to JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, object]] = {}
    for pid, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    (folder / "optimizer.json").write_text(json.dumps({"param_groups": state["param_groups"], "scalars": scalars}))


def _optimizer_from_files(optimizer: torch.optim.Optimizer, folder: Path) -> None:
    meta = json.loads((folder / "optimizer.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict[str, object]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_to_file(folder: Path) -> None:
    tensors = {"cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(tensors, str(folder / "rng.safetensors"))


def _rng_from_file(folder: Path) -> None:
    tensors = load_file(str(folder / "rng.safetensors"))
    torch.random.set_rng_state(tensors["cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    folder: Path,
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    optimizer: torch.optim.Optimizer,
    *,
    config: TrainConfig,
    step: int,
    steps: int,
    meta: Mapping[str, object],
) -> Path:
    """Write a complete checkpoint into `folder` atomically (a temporary sibling, then rename)."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a run killed while saving; never a valid checkpoint
    tmp.mkdir(parents=True)
    if config.mode == "lora":
        # The adapter carries the new-token rows (trainable tokens); the base rows are the base
        # model's, so the full resized embedding matrices (V x H, twice if untied) are not copied.
        model.save_pretrained(str(tmp), save_embedding_layers=False)
    else:
        model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(tmp)
    _optimizer_to_files(optimizer, tmp)
    _rng_to_file(tmp)
    state = {"step": step, "total_steps": steps, "config": config.model_dump(mode="json")}
    (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=2))
    vocab_size = embedding_rows(model)
    write_checkpoint_meta(
        tmp,
        {
            **meta,
            "mode": config.mode,
            "stage": config.stage,
            "step": step,
            "vocab_size": vocab_size,
            "final": step == steps,
        },
    )
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def read_trainer_state(folder: Path) -> dict:
    path = Path(folder) / TRAINER_STATE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a resumable checkpoint")
    return json.loads(path.read_text())


def _check_resumable(saved: Mapping[str, object], config: TrainConfig) -> None:
    current = config.model_dump(mode="json")
    changed = sorted(k for k in current if k not in RESUMABLE_FIELDS and saved.get(k) != current[k])
    if changed:
        raise ValueError(
            f"cannot resume: the checkpoint was trained with different {changed} "
            f"(saved {[saved.get(k) for k in changed]}, now {[current[k] for k in changed]}); "
            "start the stage afresh or use the saved settings"
        )


def _prune(out_dir: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` step folders in `out_dir` (the caller may have moved them away)."""
    folders = sorted(p for p in out_dir.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in folders[:-keep_last]:
        shutil.rmtree(old)
        logger.info("retention: removed %s", old)


# --------------------------------------------------------------------------- loop


def train(
    model: CausalLM,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Encoded],
    config: TrainConfig,
    *,
    device: torch.device,
    out_dir: Path,
    meta: Mapping[str, object],
    resume_from: Path | None = None,
    on_step: Callable[[StepMetrics], None] | None = None,
    on_checkpoint: Callable[[Path, int], None] | None = None,
) -> TrainResult:
    """Train a prepared model (`prepare_model`) for `total_steps` optimizer steps.

    Checkpoints go to `out_dir/step-NNNNNN` every `save_every` steps and at the end;
    `on_checkpoint(folder, step)` is called after each is complete (it may move the folder).
    `resume_from`: a checkpoint of this run whose weights `model` already holds
    (`load_checkpoint(..., trainable=True)`); its optimizer, RNG and step are restored.
    `meta` (e.g. base_model, codes_version) is written into every checkpoint."""
    if not examples:
        raise ValueError(f"stage {config.stage!r}: no training examples")
    if "base_model" not in meta:
        raise ValueError("meta must name the base_model (needed to re-load a LoRA checkpoint)")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; load it with toolweaver.align.models.load_tokenizer")
    out_dir.mkdir(parents=True, exist_ok=True)
    to_device(model, device)
    model.train()
    optimizer = make_optimizer(model, config)
    steps = total_steps(len(examples), config)
    done = 0
    if resume_from is not None:
        saved = read_trainer_state(resume_from)
        _check_resumable(saved["config"], config)
        _optimizer_from_files(optimizer, resume_from)
        _rng_from_file(resume_from)
        done = int(saved["step"])
        logger.info("stage %s: resumed from %s at step %d/%d", config.stage, resume_from, done, steps)
    lengths = [len(e) for e in examples]
    autocast = autocast_for(config, device)
    n_tokens, train_s, last_loss = 0, 0.0, float("nan")
    final = out_dir / f"step-{steps:06d}"
    for step in range(done + 1, steps + 1):
        epoch, index_batches = step_batches(lengths, config, step)
        batches = [
            {
                k: v.to(device)
                for k, v in collate_left([examples[i] for i in idx], pad_id=tokenizer.pad_token_id).items()
            }
            for idx in index_batches
        ]
        started = time.perf_counter()
        lr = lr_at(step, steps, config)
        last_loss, norm = train_step(
            model, batches, optimizer, lr=lr, max_grad_norm=config.max_grad_norm, autocast=autocast
        )
        step_s = time.perf_counter() - started
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        n_tokens, train_s = n_tokens + tokens, train_s + step_s
        loss_tokens = sum(int((b["labels"] != IGNORE_INDEX).sum()) for b in batches)
        metrics = StepMetrics(
            config.stage, step, epoch, last_loss, lr, norm, tokens, loss_tokens, step_s, tokens / step_s
        )
        logger.info(
            "stage %s step %d/%d loss %.4f lr %.2e %.0f tok/s",
            config.stage,
            step,
            steps,
            last_loss,
            lr,
            tokens / step_s,
        )
        if on_step is not None:
            on_step(metrics)
        if step == steps or (config.save_every and step % config.save_every == 0):
            folder = save_checkpoint(
                out_dir / f"step-{step:06d}",
                model,
                tokenizer,
                optimizer,
                config=config,
                step=step,
                steps=steps,
                meta=meta,
            )
            if on_checkpoint is not None:
                on_checkpoint(folder, step)
            _prune(out_dir, config.keep_last)
    model.eval()
    return TrainResult(final, steps, n_tokens, train_s, n_tokens / train_s if train_s else 0.0, last_loss)


def metrics_record(metrics: StepMetrics) -> dict[str, object]:
    return asdict(metrics)


__all__ = [
    "CHECKPOINT_META",
    "STAGES",
    "StepMetrics",
    "TrainConfig",
    "TrainResult",
    "collate_left",
    "epoch_batches",
    "lr_at",
    "make_optimizer",
    "prepare_model",
    "read_trainer_state",
    "save_checkpoint",
    "step_batches",
    "total_steps",
    "train",
    "train_step",
]
