"""`toolweaver finetune`: staged fine-tuning (memorization -> retrieval -> trajectory).

Light module: torch, transformers and the store are imported inside the command body.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_common import StoreOpt, fail, resolve_store, setup_logging


def finetune(
    store: StoreOpt = None,
    stages: Annotated[
        str, typer.Option("--stages", help="Comma-separated stages, run in order: memorization,retrieval,trajectory.")
    ] = "memorization,retrieval,trajectory",
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="Base model: a Hugging Face id, a local folder or .gguf file, or 'smollm2' (offline default).",
        ),
    ] = "smollm2",
    init: Annotated[
        str | None,
        typer.Option(
            "--init", help="Start the first stage from this registered llm checkpoint id instead of the base model."
        ),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="lora (adapter + new-token rows) or full.")] = "lora",
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Optimizer steps per stage (overrides --epochs).")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", min=1, help="Epochs per stage (default: the config's).")
    ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    grad_accum: Annotated[
        int | None, typer.Option("--grad-accum", min=1, help="Micro-batches per optimizer step.")
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option("--max-length", min=8, help="Tokens per example (longer ones lose their oldest tokens)."),
    ] = None,
    save_every: Annotated[
        int | None, typer.Option("--save-every", min=0, help="Checkpoint every N steps (0: only at the end).")
    ] = None,
    keep_last: Annotated[int | None, typer.Option("--keep-last", min=1, help="Checkpoints kept per stage.")] = None,
    lora_r: Annotated[int | None, typer.Option("--lora-r", min=1, help="LoRA rank (default: the config's).")] = None,
    lora_layers: Annotated[
        int | None, typer.Option("--lora-layers", min=1, help="LoRA on the last N decoder layers only (default: all).")
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            "--target",
            min=0,
            max=1,
            help="Memorization stops when exact match on a seeded sample of tools reaches this (default 0.98; "
            "0: train to the epoch cap).",
        ),
    ] = None,
    check_every: Annotated[
        int | None,
        typer.Option("--check-every", min=0, help="Steps between memorization checks (0: once per epoch; default)."),
    ] = None,
    check_tools: Annotated[
        int | None, typer.Option("--check-tools", min=1, help="Tools in the memorization check sample (default 200).")
    ] = None,
    tokens: Annotated[
        str | None,
        typer.Option(
            "--tokens",
            help="codes (ToolWeaver: L×K code tokens; the default) or atomic (ToolGen: one new token per tool), "
            "trained on the same examples.",
        ),
    ] = None,
    vocab_init: Annotated[
        str | None,
        typer.Option(
            "--vocab-init",
            help="Init of the new token rows: random, mean or codebook (RQ-VAE codebooks; codes only). "
            "Default: codebook for codes, random for atomic tokens.",
        ),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config_json: Annotated[
        Path | None,
        typer.Option(
            "--config", exists=True, dir_okay=False, help="A FinetuneConfig JSON file; options given here override it."
        ),
    ] = None,
) -> None:
    """Fine-tune the LLM on the store's sft_examples, stage by stage; prints each stage's checkpoint."""
    setup_logging()
    from storage import Store
    from tasks.stages.finetune import FinetuneConfig
    from tasks.stages.finetune import finetune as run_finetune

    base = json.loads(config_json.read_text()) if config_json else {}
    overrides = {
        "mode": mode,
        "max_steps": max_steps,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_length": max_length,
        "save_every": save_every,
        "keep_last": keep_last,
        "lora_r": lora_r,
        "lora_layers": lora_layers,
        "check_every": check_every,
        "check_tools": check_tools,
        "device": device,
        "seed": seed,
    }
    train = {**base.get("train", {}), **{k: v for k, v in overrides.items() if v is not None}}
    if target is not None:
        train["target"] = target or None  # 0: no early stop
    vocab = {**base.get("vocab", {}), **({"init": vocab_init} if vocab_init else {})}
    chosen = {
        "model": model,
        "stages": tuple(s.strip() for s in stages.split(",") if s.strip()),
        "train": train,
        "vocab": vocab,
        **({"tokens": tokens} if tokens else {}),
    }
    try:
        config = FinetuneConfig(**{**base, **chosen})
    except ValueError as error:
        raise fail(f"invalid settings: {error}") from error
    outcomes = run_finetune(Store(resolve_store(store)), config, init=init)
    for o in outcomes:
        typer.echo(
            f"{o.stage}\t{o.checkpoint_id}\tsteps={o.steps}\tresumed_from={o.resumed_from_step}\ttokens/s={o.tokens_per_s:.0f}"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("finetune")(finetune)
