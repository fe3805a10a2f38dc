"""Stage adapters: each runs one Prefect-free stage function (`tasks.stages`) for a
Prefect task and returns a `StageResult`.

An adapter opens the store with the flow run id (so lineage names the run), applies
the test-only failure injection, and turns the stage's refs into a `StageResult`.
Every adapter takes the store root first: `tasks.prefect.cache.serialised` locks on it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.digests import config_hash
from tasks.prefect.cache import maybe_fail
from tasks.prefect.profiles import BfclSubset, write_bfcl_subset
from tasks.prefect.progress import TrainingProgress
from tasks.prefect.results import SourceSpec, StageResult, result_of
from tasks.stages import datasets as datasets_stage
from tasks.stages import evaluate as evaluate_stage
from tasks.stages import finetune as finetune_stage
from tasks.stages import ingest as ingest_stage
from tasks.stages import tokenize as tokenize_stage
from tasks.stages import update as update_stage
from tasks.stages.evaluate import EvaluateConfig
from tasks.stages.finetune import FinetuneConfig
from tasks.stages.tokenize import TokenizeConfig
from tasks.stages.update import UpdateConfig
from toolweaver.align.datasets import DatasetConfig
from toolweaver.align.train import Stage
from toolweaver.codes.embed import EmbedConfig
from toolweaver.eval.report import markdown_table

logger = logging.getLogger(__name__)


def open_store(store: str) -> Any:
    from prefect.runtime import flow_run

    from storage import Store

    # The flow run id goes into every lineage row this stage writes.
    return Store(root=store, run_id=flow_run.id)


def ingest(
    store: str, sources: tuple[SourceSpec, ...], bfcl_subset: BfclSubset | None, inject_failure: bool = False
) -> StageResult:
    """Ingest every source into the unified tables (BFCL cut to the profile's subset)."""
    maybe_fail("ingest", inject_failure)
    st = open_store(store)
    refs: dict[str, Any] = {}
    counts: Counter[str] = Counter()
    for src in sources:
        path = _profile_cut(store, src, bfcl_subset)
        summary = ingest_stage.ingest(st, src.source, path, snapshot=src.snapshot)
        refs.update(summary["refs"])  # later sources' versions supersede earlier ones
        counts.update(summary["lifecycle"]["counts"])
    # The catalog changes ride along as facts: tools added, changed (re-embedded), retired.
    return result_of("ingest", refs.values(), **{f"tools_{k}": counts[k] for k in ("added", "changed", "retired")})


def _profile_cut(store: str, src: SourceSpec, subset: BfclSubset | None) -> Path | None:
    """The folder to ingest: the source itself, or for `bfcl` with a subset, the cut of
    it materialised under `<store>/sources/` (same layout, so record origins match)."""
    if subset is None or src.source != "bfcl":
        return src.path
    assert src.path is not None, "sources are resolved before they reach a task"
    tag = hashlib.sha256(f"{src.path}\0{config_hash(subset)}".encode()).hexdigest()[:12]
    return write_bfcl_subset(src.path, Path(store) / "sources" / f"bfcl-subset-{tag}", subset)


def embed(
    store: str, upstream: tuple[StageResult, ...], config: EmbedConfig, inject_failure: bool = False
) -> StageResult:
    """Embed the `tools` docs that have no vector under this model yet (only new docs)."""
    maybe_fail("embed", inject_failure)
    ref, n_embedded = tokenize_stage.embed_tools(open_store(store), config)
    return result_of("embed", [ref] if ref is not None else [], embedded=n_embedded)


def cousage(store: str, upstream: tuple[StageResult, ...], inject_failure: bool = False) -> StageResult:
    """Co-usage edges from qrels + trajectories."""
    maybe_fail("cousage", inject_failure)
    return result_of("cousage", [tokenize_stage.build_cousage(open_store(store))])


def codes(
    store: str, upstream: tuple[StageResult, ...], config: TokenizeConfig, inject_failure: bool = False
) -> StageResult:
    """Train the RQ-VAE and assign unique codes; with existing codes, place only new tools."""
    maybe_fail("codes", inject_failure)
    result = tokenize_stage.tokenize(open_store(store), config)
    facts = {"mode": result.mode, "new_codes": result.n_new_codes, "codes_version": result.codes_version}
    facts |= {k: v for k, v in result.metrics.items() if isinstance(v, int | float | str | bool)}
    return result_of("codes", result.refs.values(), checkpoints=[result.codes_version], **facts)


def datasets(
    store: str, upstream: tuple[StageResult, ...], config: DatasetConfig, inject_failure: bool = False
) -> StageResult:
    """ShareGPT examples (memorization, retrieval, trajectory) -> `sft_examples`, `sft_rejects`."""
    maybe_fail("datasets", inject_failure)
    from prefect.runtime import flow_run

    built = datasets_stage.build_datasets_stage(open_store(store), config, run_id=flow_run.id)
    return result_of(
        "datasets", [built.examples, built.rejects], **{f"examples.{k}": v for k, v in built.counts.items()}
    )


def finetune(
    store: str,
    stage: Stage,
    examples: StageResult,
    init: StageResult | None,
    config: FinetuneConfig,
    update: UpdateConfig,
    inject_failure: bool = False,
) -> StageResult:
    """One fine-tuning stage from `init`'s checkpoint (None = the base model + code tokens,
    or, when tools were added since the last model, that model: see tasks/update.py).

    A killed run leaves its step checkpoints in the store; running the task again resumes
    from the newest one (tasks.stages.finetune), so retries and re-runs never repeat steps.
    """
    maybe_fail(f"finetune-{stage}", inject_failure)
    from prefect.runtime import flow_run

    st = open_store(store)
    run_id = flow_run.id or "local"
    start, table, facts = _stage_start(st, stage, init, config, update, run_id)
    if table == update_stage.SFT_UPDATE and stage not in update_stage.stages_with_examples(st):
        logger.info("finetune-%s: no new examples for this stage, keeping %s", stage, start)
        return result_of(f"finetune-{stage}", [], checkpoints=[start] if start else [], steps=0, **facts)
    progress = TrainingProgress(f"finetune-{stage}")
    outcome = finetune_stage.finetune_stage(
        st, stage, config, init=start, run_id=run_id, progress=progress.update, examples_table=table
    )
    return result_of(
        f"finetune-{stage}",
        [outcome.metrics] if outcome.metrics is not None else [],
        checkpoints=[outcome.checkpoint_id],
        steps=outcome.steps,
        resumed_from_step=outcome.resumed_from_step,
        tokens_per_s=round(outcome.tokens_per_s, 1),
        **facts,
    )


def _stage_start(
    st: Any, stage: Stage, init: StageResult | None, config: FinetuneConfig, update: UpdateConfig, run_id: str
) -> tuple[str | None, str, dict[str, Any]]:
    """(start checkpoint, examples table, facts) of a fine-tuning stage.

    Later stages follow the first: an update chain trains every stage on `sft_update`.
    The first stage starts from the previous model when tools were added, changed or
    retired since it.
    """
    if init is not None:
        update_from = init.facts.get("update_from")
        table = update_stage.SFT_UPDATE if update_from else finetune_stage.SFT_EXAMPLES
        return (
            (init.checkpoints[-1] if init.checkpoints else None),
            table,
            ({"update_from": update_from} if update_from else {}),
        )
    previous = update_stage.previous_model(st, config.stages[-1], config.model) if update.enabled else None
    if previous is None:
        return None, finetune_stage.SFT_EXAMPLES, {}
    new_codes = update_stage.new_tool_codes(st, previous.known_tools)
    changed_codes = update_stage.changed_tool_codes(st, previous)
    retired = update_stage.retired_since_model(st, previous)
    if not (new_codes or changed_codes or retired):
        return None, finetune_stage.SFT_EXAMPLES, {}
    _, counts = update_stage.write_update_examples(st, new_codes | changed_codes, update, run_id=run_id)
    lifecycle = {"new_tools": len(new_codes), "changed_tools": len(changed_codes), "retired_tools": len(retired)}
    logger.info("finetune-%s: %s, continuing %s (%s)", stage, lifecycle, previous.checkpoint_id, counts)
    return (
        previous.checkpoint_id,
        update_stage.SFT_UPDATE,
        {"update_from": previous.checkpoint_id, **lifecycle, **counts},
    )


def evaluate(
    store: str,
    upstream: tuple[StageResult, ...],
    datasets: tuple[str, ...],
    config: EvaluateConfig,
    model: StageResult | None,
    inject_failure: bool = False,
) -> StageResult:
    """Every configured method on every ingested query set -> a new `eval_results` version,
    plus the markdown/PNG report (also attached as Prefect artifacts). With a fine-tuned
    `model`, its checkpoint is evaluated as method `toolweaver`."""
    maybe_fail("evaluate", inject_failure)
    st = open_store(store)
    if model is not None:
        folder = str(st.checkpoint_path(model.checkpoints[-1]))
        methods = config.method_configs.model_copy(update={"checkpoints": {"toolweaver": folder}})
        config = config.model_copy(update={"methods": (*config.methods, "toolweaver"), "method_configs": methods})
    report_dir = Path(store) / "reports" / "evaluate"
    rows, ref = evaluate_stage.evaluate(
        st, config, datasets=datasets, report_dir=report_dir, command="toolweaver run (build flow, evaluate stage)"
    )
    table = markdown_table([row.as_dict() for row in rows])
    create_markdown_artifact(markdown=table, key="toolweaver-eval", description="Evaluation: ToolWeaver vs baselines")
    create_table_artifact(
        table=[row.as_dict() for row in rows], key="toolweaver-eval-rows", description="eval_results rows"
    )
    headline = {
        f"{r.dataset}.{r.method}.{r.setting}.{r.convention}.{r.metric}": round(r.value, 4)
        for r in rows
        if r.metric in HEADLINE_METRICS and r.setting == "in-domain"
    }
    return result_of("evaluate", [ref], **headline, report=str(report_dir / "eval_report.md"))


HEADLINE_METRICS = ("ndcg@5", "recall@5")


def summary(store: str, upstream: tuple[StageResult, ...], inject_failure: bool = False) -> StageResult:
    """Row counts of every table the upstream stages wrote, read back through SQL."""
    maybe_fail("summary", inject_failure)
    from storage import connect

    tables = sorted({t.table for r in upstream for t in r.tables})
    with connect(store) as con:
        facts: dict[str, str | int | float | bool | None] = {
            f"rows.{t}": int(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables
        }
    return StageResult(stage="summary", facts=facts)
