"""`toolweaver tokenize` and `toolweaver export-tokenizer-inputs`.

Light module: torch, sentence-transformers and the store are imported inside the
command bodies so `toolweaver --help` stays fast.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_common import StoreOpt, fail, resolve_store, setup_logging


class DeviceChoice(enum.StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="sentence-transformers model id or folder (default: all-MiniLM-L6-v2, offline)."),
]
DeviceOpt = Annotated[DeviceChoice, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]


def tokenize(
    store: StoreOpt = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Retrain the code model; recompute every code.")] = False,
    model: ModelOpt = None,
    levels: Annotated[int | None, typer.Option("--levels", min=1, help="L: code length.")] = None,
    codebook_size: Annotated[
        int | None, typer.Option("--codebook-size", min=2, help="K per level (default: derived from catalog size).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="RQ-VAE epochs after the warm-up.")] = None,
    lambda_cousage: Annotated[
        float | None, typer.Option("--lambda", min=0.0, help="Weight of the co-usage term (0 disables it).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the RQ-VAE training.")] = None,
    device: DeviceOpt = DeviceChoice.auto,
) -> None:
    """Embed new tool docs, refresh the co-usage graph, then assign codes.

    With a trained code model and existing codes only tools without a code are placed
    (existing codes never change); --retrain recomputes everything.
    """
    setup_logging()
    from storage import Store
    from tasks.stages.codes import TokenizeConfig
    from tasks.stages.tokenize import tokenize as run_tokenize
    from toolweaver.codes.embed import EmbedConfig

    overrides = {
        "levels": levels,
        "codebook_size": codebook_size,
        "epochs": epochs,
        "lambda_cousage": lambda_cousage,
        "seed": seed,
    }
    rqvae: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    rqvae["device"] = device.value
    embed = EmbedConfig(device=device.value, **({"model": model} if model else {}))
    try:
        cfg = TokenizeConfig.model_validate({"embed": embed, "rqvae": rqvae, "retrain": retrain})
        result = run_tokenize(Store(resolve_store(store)), cfg)
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise fail(str(err)) from err
    summary = {
        "mode": result.mode,
        "embedded": result.n_embedded,
        "new_codes": result.n_new_codes,
        "codes_version": result.codes_version,
        "tables": {name: ref.version for name, ref in result.refs.items() if ref is not None},
        "metrics": result.metrics,
    }
    typer.echo(json.dumps(summary, indent=2, default=str))


def export_tokenizer_inputs(
    out: Annotated[Path, typer.Option("--out", help="Folder for embeddings.npy, edges.npz, tool_ids.txt.")],
    store: StoreOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = DeviceChoice.auto,
) -> None:
    """Write the benchmark inputs of bench/tokenize.py from the store (embeds missing docs first)."""
    setup_logging()
    from tasks.stages.tokenize import export_tokenizer_inputs as run_export
    from toolweaver.codes.embed import EmbedConfig

    embed = EmbedConfig(device=device.value, **({"model": model} if model else {}))
    try:
        meta = run_export(resolve_store(store), out, embed)
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise fail(str(err)) from err
    typer.echo(json.dumps(meta, indent=2))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("tokenize")(tokenize)
    app.command("export-tokenizer-inputs")(export_tokenizer_inputs)
