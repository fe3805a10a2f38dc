"""The `build` flow: stage-group subflows, each a straight line of cached stage tasks.

    build ─┬─ ingest    (ingest; the profile's cut of BFCL)
           ├─ tokenize  (embed, cousage -> codes: RQ-VAE + unique code assignment)
           ├─ align     (datasets -> finetune-<stage> for each configured stage)
           ├─ evaluate  (bm25, dense, toolweaver -> eval_results + report)
           ├─ summary   (SQL row counts of what was written)
           ├─ report    (markdown artifact: tables, versions, `toolweaver sql` queries)
           └─ retention (when configured: prune old checkpoints, vacuum old Delta files)

Stage groups are separate flows so that a group can be run (and deployed) alone; all
the logic — caching, force, retries, failure injection — lives in `tasks/prefect/`.
"""

from __future__ import annotations

from prefect import flow

from tasks.prefect import registry as stage_tasks
from tasks.prefect.plan import BuildConfig, BuildPlan, BuildResult, resolve_plan
from tasks.prefect.registry import run_stage
from tasks.prefect.reporting import report, retention
from tasks.prefect.results import StageResult


@flow(name="ingest")
def ingest_flow(plan: BuildPlan) -> StageResult:
    return run_stage(stage_tasks.ingest, plan, sources=plan.sources, bfcl_subset=plan.profile.bfcl_subset)


@flow(name="tokenize")
def tokenize_flow(plan: BuildPlan, ingested: StageResult) -> tuple[StageResult, ...]:
    """(embed, cousage, codes) results; the last one holds the codes."""
    # Each stage is keyed on exactly the tables it reads.
    embedded = run_stage(
        stage_tasks.embed, plan, upstream=(ingested.only("tools"),), config=plan.profile.tokenize.embed
    )
    cooccur = run_stage(stage_tasks.cousage, plan, upstream=(ingested.only("qrels", "trajectories"),))
    coded = run_stage(
        stage_tasks.codes, plan, upstream=(ingested.only("tools"), embedded, cooccur), config=plan.profile.tokenize
    )
    return (embedded, cooccur, coded)


@flow(name="align")
def align_flow(plan: BuildPlan, ingested: StageResult, coded: StageResult) -> tuple[StageResult, ...]:
    """(datasets, finetune-<stage>...) results; the last one holds the final model."""
    examples = run_stage(stage_tasks.datasets, plan, upstream=(ingested, coded), config=plan.profile.datasets)
    tuned: list[StageResult] = []
    # Each configured fine-tuning stage starts from the previous stage's checkpoint.
    for stage in plan.profile.finetune.stages:
        init = tuned[-1] if tuned else None
        tuned.append(
            run_stage(
                stage_tasks.finetune[stage],
                plan,
                stage=stage,
                examples=examples,
                init=init,
                config=plan.profile.finetune,
                update=plan.update,
            )
        )
    return (examples, *tuned)


@flow(name="evaluate")
def evaluate_flow(plan: BuildPlan, upstream: tuple[StageResult, ...], model: StageResult | None) -> StageResult:
    return run_stage(
        stage_tasks.evaluate,
        plan,
        upstream=upstream,
        datasets=plan.eval_datasets,
        config=plan.evaluate,
        model=model if plan.profile.eval_llm else None,
    )


@flow(name="summary")
def summary_flow(plan: BuildPlan, upstream: tuple[StageResult, ...]) -> StageResult:
    return run_stage(stage_tasks.summary, plan, upstream=upstream)


@flow(name="build")
def build(config: BuildConfig = BuildConfig()) -> BuildResult:  # noqa: B008 - Prefect reads the default
    """Build everything for `config` (see tasks/prefect/plan.py: BuildConfig)."""
    plan = resolve_plan(config)
    ingested = ingest_flow(plan)
    tokenized = tokenize_flow(plan, ingested)
    aligned = align_flow(plan, ingested, tokenized[-1])
    model = aligned[-1] if len(aligned) > 1 else None
    evaluated = evaluate_flow(plan, (ingested, tokenized[-1]), model)
    summarized = summary_flow(plan, (ingested, *tokenized, *aligned, evaluated))
    result = report(plan, (ingested, *tokenized, *aligned, evaluated, summarized))
    retention(plan)
    return result
