"""`toolweaver evaluate`: every method through one harness, both NDCG conventions.

Light module: torch, sentence-transformers and the store are imported inside the
command body so `toolweaver --help` stays fast.
"""

from __future__ import annotations

import enum
import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_common import StoreOpt, fail, resolve_store, setup_logging


class SettingChoice(enum.StrEnum):
    in_domain = "in-domain"
    multi_domain = "multi-domain"
    both = "both"


class EvalTask(enum.StrEnum):
    retrieval = "retrieval"
    calls = "calls"


class EvalFormat(enum.StrEnum):
    table = "table"
    json = "json"


def evaluate(
    store: StoreOpt = None,
    beir: Annotated[
        Path | None,
        typer.Option(
            "--beir",
            help="A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): every split but train is evaluated.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", help="An ingested query set: SOURCE or SOURCE/GROUP (repeatable), e.g. stabletoolbench."
        ),
    ] = None,
    methods: Annotated[
        str,
        typer.Option(
            "--methods",
            help="Comma-separated: bm25,dense,toolretriever,atomic,toolweaver; a labelled LLM checkpoint "
            "is toolweaver-<label> or atomic-<label> (e.g. toolweaver-l0), with --checkpoint <id>=CHECKPOINT.",
        ),
    ] = "bm25,dense",
    setting: Annotated[
        SettingChoice, typer.Option("--setting", help="Candidates: the set's own tools, the whole catalog, or both.")
    ] = SettingChoice.both,
    fmt: Annotated[
        EvalFormat, typer.Option("--format", help="table (markdown) or json (only a JSON array of rows on stdout).")
    ] = EvalFormat.table,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Write eval_report.md and eval_report.png here.")
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option("--checkpoint", help="METHOD=CHECKPOINT_ID_OR_DIR for an LLM method (repeatable)."),
    ] = None,
    toolretriever_steps: Annotated[
        int | None,
        typer.Option(
            "--toolretriever-steps", min=1, help="Fine-tuning step budget of toolretriever (default: its config)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the held-out split and of toolretriever training.")] = 0,
    no_ingest: Annotated[
        bool, typer.Option("--no-ingest", help="Do not ingest the --beir folder into the store.")
    ] = False,
    task: Annotated[
        EvalTask,
        typer.Option("--task", help="retrieval (NDCG, recall) or calls (BFCL call accuracy, bfcl-eval's checkers)."),
    ] = EvalTask.retrieval,
    category: Annotated[
        list[str] | None,
        typer.Option("--category", help="--task calls: a BFCL category (repeatable; default the seven)."),
    ] = None,
    per_category: Annotated[
        int | None, typer.Option("--per-category", min=1, help="--task calls: held-out questions per category.")
    ] = 100,
    conversations: Annotated[
        int | None, typer.Option("--conversations", min=1, help="--task calls: held-out multi-turn conversations.")
    ] = 50,
    device: Annotated[str, typer.Option("--device", help="--task calls: auto | cpu | cuda[:i]")] = "auto",
    base_model: Annotated[
        str | None,
        typer.Option("--base-model", help="--task calls: the backbone of base and bm25 (id or path; default smollm2)."),
    ] = None,
) -> None:
    """Evaluate retrieval methods (or, with --task calls, whole calls on BFCL); prints a table
    (or JSON rows) and appends them to `eval_results`."""
    setup_logging()
    if task == EvalTask.calls:
        calls_opts = {
            "categories": category,
            "per_category": per_category,
            "conversations": conversations,
            "base_model": base_model,
        }
        records = _evaluate_calls(store, methods, checkpoint or [], calls_opts, device)
        _print_records(records, fmt)
        return
    from storage import Store
    from tasks.stages.evaluate import EvaluateConfig, resolve_checkpoints
    from tasks.stages.evaluate import evaluate as run_evaluate
    from toolweaver.align.splits import SplitConfig
    from toolweaver.eval.methods import MethodsConfig, parse_method_ids
    from toolweaver.eval.toolretriever import ToolRetrieverConfig

    try:
        method_ids = parse_method_ids(methods)
    except ValueError as err:
        raise fail(str(err)) from err
    settings = ("in-domain", "multi-domain") if setting == SettingChoice.both else (setting.value,)
    store_obj = Store(resolve_store(store))
    retriever_cfg = {"seed": seed, **({"max_steps": toolretriever_steps} if toolretriever_steps else {})}
    command = "toolweaver " + shlex.join(sys.argv[1:])
    try:
        config = EvaluateConfig(
            methods=tuple(method_ids),
            settings=settings,
            split=SplitConfig(seed=seed),
            method_configs=MethodsConfig(
                toolretriever=ToolRetrieverConfig(**retriever_cfg),
                checkpoints=resolve_checkpoints(store_obj, checkpoint or []),
            ),
            ingest_beir=not no_ingest,
        )
        rows, ref = run_evaluate(
            store_obj, config, beir=beir, datasets=dataset or [], report_dir=report_dir, command=command
        )
    except (ValueError, KeyError, FileNotFoundError) as err:
        # Input problems (unknown dataset, missing checkpoint or codes): a message, not a traceback.
        raise fail(str(err)) from err
    records = [row.as_dict() for row in rows]
    _print_records(records, fmt)
    typer.echo(f"(eval_results version {ref.version}, {len(records)} rows)", err=True)


def _print_records(records: list[dict], fmt: EvalFormat) -> None:
    from toolweaver.eval.report import markdown_table

    if fmt == EvalFormat.json:
        typer.echo(json.dumps(records, allow_nan=True))
    else:
        typer.echo(markdown_table(records))


def _evaluate_calls(store: Path | None, methods: str, checkpoint: list[str], opts: dict, device: str) -> list[dict]:
    """`--task calls`: BFCL call accuracy (tasks.stages.calls)."""
    from storage import Store
    from tasks.stages.calls import CallsConfig, evaluate_calls
    from tasks.stages.evaluate import resolve_checkpoints
    from toolweaver.device import resolve_device

    store_obj = Store(resolve_store(store))
    try:
        overrides = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.items() if v is not None}
        config = CallsConfig(
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
            checkpoints=resolve_checkpoints(store_obj, checkpoint),
            **overrides,
        )
        rows, ref = evaluate_calls(store_obj, config, device=resolve_device(device))
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise fail(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)) from err
    typer.echo(f"(eval_results version {ref.version}, {len(rows)} rows)", err=True)
    return rows


def vocab_report(
    store: StoreOpt = None,
    fmt: Annotated[EvalFormat, typer.Option("--format", help="table or json.")] = EvalFormat.table,
    toolgen_tokens: Annotated[
        Path | None,
        typer.Option(
            "--toolgen-tokens",
            help="ToolGen's virtual_tokens.txt, to print its count beside ours.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Tokens added to the LLM vocabulary for the store's catalog: codes vs atomic (one per tool)."""
    setup_logging()
    from storage import Store
    from tasks.stages.evaluate import store_vocabulary_report
    from toolweaver.eval.costs import count_virtual_tokens

    try:
        report = store_vocabulary_report(Store(resolve_store(store)))
    except FileNotFoundError as err:
        raise fail(str(err)) from err
    if toolgen_tokens is not None:
        report["toolgen_reference_tokens"] = count_virtual_tokens(toolgen_tokens)
    if fmt == EvalFormat.json:
        typer.echo(json.dumps([report]))
    else:
        width = max(map(len, report))
        typer.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in report.items()))


def register(app: typer.Typer) -> None:
    """Add `evaluate` and `vocab-report` to the CLI."""
    app.command("evaluate")(evaluate)
    app.command("vocab-report")(vocab_report)
