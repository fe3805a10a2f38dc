"""The stage registry: every pipeline stage as a cached Prefect task, and `run_stage`,
which flows call to run one with the plan's run options (force, retries, failure
injection).

Each stage task takes small, content-hashable inputs (the store root as a string,
`SourceSpec` file inputs, upstream `StageResult`s, a frozen stage config) and returns
a `StageResult`; `tasks.prefect.cache.ContentCachePolicy` makes its cache key
run-independent.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import Task

from tasks.prefect import adapters
from tasks.prefect.cache import StageSpec, stage_task
from tasks.prefect.plan import BuildPlan
from tasks.prefect.results import StageResult
from tasks.stages import codes as codes_stage
from tasks.stages import cousage as cousage_stage
from tasks.stages import datasets as datasets_stage
from tasks.stages import embed as embed_stage
from tasks.stages import evaluate as evaluate_stage
from tasks.stages import finetune as finetune_stage
from tasks.stages import ingest as ingest_stage
from tasks.stages import update as update_stage
from toolweaver.align.train import STAGES as FINETUNE_STAGES

logger = logging.getLogger(__name__)


# Pipeline order: the resume test fails each stage in turn and expects exactly the
# stages before it to be served from the cache.
STAGE_SPECS: tuple[StageSpec, ...] = (
    StageSpec(name="ingest", outputs=ingest_stage.TABLES, fn=adapters.ingest, code=(ingest_stage.ingest,)),
    StageSpec(name="embed", outputs=("embeddings",), fn=adapters.embed, code=(embed_stage.embed_tools,)),
    StageSpec(name="cousage", outputs=("cousage",), fn=adapters.cousage, code=(cousage_stage.build_cousage,)),
    StageSpec(name="codes", outputs=("codes",), fn=adapters.codes, code=(codes_stage.build_codes,)),
    StageSpec(
        name="datasets",
        outputs=(datasets_stage.SFT_EXAMPLES,),
        fn=adapters.datasets,
        code=(datasets_stage.build_datasets_stage,),
    ),
    *(
        StageSpec(
            name=f"finetune-{stage}",
            outputs=(finetune_stage.TRAIN_METRICS,),
            fn=adapters.finetune,
            code=(finetune_stage.finetune_stage, update_stage.write_update_examples),
        )
        for stage in FINETUNE_STAGES
    ),
    StageSpec(name="evaluate", outputs=(evaluate_stage.TABLE,), fn=adapters.evaluate, code=(evaluate_stage.evaluate,)),
    StageSpec(name="summary", outputs=(), fn=adapters.summary),
)
STAGES: dict[str, StageSpec] = {s.name: s for s in STAGE_SPECS}
TASKS: dict[str, Task[..., StageResult]] = {s.name: stage_task(s) for s in STAGE_SPECS}
ingest = TASKS["ingest"]
embed = TASKS["embed"]
cousage = TASKS["cousage"]
codes = TASKS["codes"]
datasets = TASKS["datasets"]
finetune: dict[str, Task[..., StageResult]] = {stage: TASKS[f"finetune-{stage}"] for stage in FINETUNE_STAGES}
evaluate = TASKS["evaluate"]
summary = TASKS["summary"]


def planned_stages(plan: BuildPlan) -> list[str]:
    """The stages `build` runs for this plan, in pipeline order."""
    tuned = {f"finetune-{stage}" for stage in plan.profile.finetune.stages}
    return [s.name for s in STAGE_SPECS if not s.name.startswith("finetune-") or s.name in tuned]


def _outputs_missing(spec: StageSpec, store: str) -> list[str]:
    if not spec.outputs:
        return []
    st = adapters.open_store(store)
    return [t for t in spec.outputs if not st.exists(t)]


def run_stage(stage_task: Task[..., StageResult], plan: BuildPlan, /, **inputs: Any) -> StageResult:
    """Call a stage task with the plan's run options applied.

    A stage is recomputed (cache refreshed) when `force` names it or when any table it
    writes is missing from the store: a cached ref into a wiped store would be a lie.
    """
    spec = STAGES[stage_task.name]
    missing = _outputs_missing(spec, plan.store)
    if missing:
        logger.info("stage %s: tables %s missing from %s, recomputing", spec.name, missing, plan.store)
    configured = stage_task.with_options(
        refresh_cache=spec.name in plan.run.force or bool(missing),
        retries=plan.run.retries,
        retry_delay_seconds=plan.run.retry_delay_s,
    )
    return configured(store=plan.store, inject_failure=plan.run.fail_stage == spec.name, **inputs)
