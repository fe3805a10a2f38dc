"""`toolweaver datasets` and `toolweaver retrieve` (generative alignment).

Heavy modules (torch, transformers, deltalake) are imported inside the command bodies so
that `toolweaver --help` stays fast.

`retrieve` loads a registered `llm` checkpoint (the latest unless `--checkpoint`) and
decodes with the codes that checkpoint was trained on, named by its meta `codes_version`:
an int is a version of the `codes` table; a string (a code-model id) selects the newest
`codes` rows of that code model (`tasks.stages.evaluate.checkpoint_codes`; atomic checkpoints get
the atomic tokens of the tools they were trained on).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.cli_agent import InputOpt, read_queries
from flows.cli_common import FormatOpt, OutputFormat, StoreOpt, emit, fail, resolve_store, setup_logging

LLM_KIND = "llm"


def datasets(
    store: StoreOpt = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="Also write <stage>.<split>.jsonl files into this folder.")
    ] = None,
    validation_fraction: Annotated[
        float | None, typer.Option("--validation-fraction", help="Share of queries held out for validation.")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the per-query split.")] = None,
    stage: Annotated[
        list[str] | None,
        typer.Option("--stage", help="memorization | retrieval | trajectory (repeatable; default all)."),
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Build the fine-tuning examples (tables sft_examples, sft_rejects).

    From tools, codes, queries, qrels and trajectories."""
    setup_logging()
    import pyarrow as pa

    from storage import Store
    from tasks.stages.datasets import build_datasets_stage
    from toolweaver.align.datasets import DatasetConfig
    from toolweaver.align.splits import SplitConfig

    try:
        config = DatasetConfig(**_dataset_overrides(validation_fraction, seed, stage, SplitConfig))
        result = build_datasets_stage(Store(resolve_store(store)), config, export_dir=export)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"sft_examples v{result.examples.version} ({result.examples.rows} rows), "
        f"sft_rejects v{result.rejects.version} ({result.rejects.rows} rows)"
        + (f"; exported {len(result.exported)} files to {export}" if export else ""),
        err=True,
    )
    stages, splits = zip(*(k.split(".") for k in result.counts), strict=True) if result.counts else ((), ())
    emit(
        pa.table(
            {
                "stage": pa.array(stages, pa.string()),
                "split": pa.array(splits, pa.string()),
                "examples": pa.array(list(result.counts.values()), pa.int64()),
            }
        ),
        fmt,
    )


def _dataset_overrides(validation_fraction, seed, stages, split_config_cls) -> dict[str, Any]:
    """Only the options given on the command line; defaults stay in the config schema."""
    split = {k: v for k, v in {"validation_fraction": validation_fraction, "seed": seed}.items() if v is not None}
    overrides: dict[str, Any] = {}
    if split:
        overrides["split"] = split_config_cls(**split)
    if stages:
        overrides["stages"] = tuple(stages)
    return overrides


def retrieve(
    query: Annotated[str | None, typer.Argument(help="The request to find tools for.")] = None,
    input_path: InputOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="How many tools to return.")] = 5,
    store: StoreOpt = None,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="An llm checkpoint id (default: the latest registered).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:i]")] = "auto",
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Top-k tools for a query (or each --input query) by constrained decoding with a fine-tuned checkpoint."""
    setup_logging()
    import pyarrow as pa

    from storage import Store
    from toolweaver.align.decode import DecodeConfig, trie_for_codes
    from toolweaver.align.decode import retrieve as decode_retrieve
    from toolweaver.align.models import load_checkpoint
    from toolweaver.device import resolve_device

    try:
        queries = read_queries(query, input_path)
        st = Store(resolve_store(store))
        checkpoint_id, meta = _pick_checkpoint(st, checkpoint)
        codes = _codes_for(st, meta)
        model, tokenizer = load_checkpoint(st.checkpoint_path(checkpoint_id), device=resolve_device(device))
        trie = trie_for_codes(tokenizer, codes)
        config = DecodeConfig(top_k=top_k)
        results = [(qid, decode_retrieve(model, tokenizer, text, trie, config)) for qid, text in queries]
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"checkpoint {checkpoint_id} (codes_version {meta.get('codes_version')!r})", err=True)
    rows = [(qid, rank, r) for qid, found in results for rank, r in enumerate(found, start=1)]
    columns = {
        "rank": pa.array([rank for _, rank, _ in rows], pa.int64()),
        "tool_id": pa.array([r.tool_id for _, _, r in rows], pa.string()),
        "code": pa.array([r.code for _, _, r in rows], pa.string()),
        "score": pa.array([r.score for _, _, r in rows], pa.float64()),
    }
    if input_path is not None:  # a batch: say which query each row answers
        columns = {"id": pa.array([qid for qid, _, _ in rows], pa.string()), **columns}
    emit(pa.table(columns), fmt)


def _pick_checkpoint(store, checkpoint_id: str | None) -> tuple[str, dict]:
    """(id, meta) of the named llm checkpoint, or of the most recently registered one."""
    rows = store.checkpoints(kind=LLM_KIND).to_pylist() if store.exists("checkpoints") else []
    if not rows:
        raise FileNotFoundError(
            f"store {store.root} has no registered {LLM_KIND!r} checkpoint: run `toolweaver finetune`"
        )
    if checkpoint_id is None:
        row = max(rows, key=lambda r: (r["created_at"], r["checkpoint_id"]))
    else:
        matches = [r for r in rows if r["checkpoint_id"] == checkpoint_id]
        if not matches:
            known = ", ".join(sorted(r["checkpoint_id"] for r in rows)[-5:])
            raise KeyError(f"no {LLM_KIND!r} checkpoint {checkpoint_id!r}; latest ids: {known}")
        row = matches[0]
    return row["checkpoint_id"], json.loads(row["meta"] or "{}")


def _codes_for(store, meta: dict) -> dict[str, str]:
    """{tool_id: code (or atomic token)} the checkpoint was trained on, retired tools left out."""
    from tasks.stages.evaluate import checkpoint_codes

    if isinstance(meta.get("codes_version"), int):
        from tasks.stages.lifecycle import active_codes

        table = store.read("codes", version=meta["codes_version"], columns=["tool_id", "code"])
        return active_codes(
            store, dict(zip(table.column("tool_id").to_pylist(), table.column("code").to_pylist(), strict=True))
        )
    return checkpoint_codes(store, meta).codes


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
    app.command("datasets")(datasets)
    app.command("retrieve")(retrieve)
