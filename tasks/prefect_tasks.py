"""Prefect tasks around the pipeline's stage functions.

Each stage task takes small, content-hashable inputs (the store root as a string,
`SourceSpec` file inputs, upstream `StageResult`s, a frozen stage config) and returns
a `StageResult`; `tasks.core.ContentCachePolicy` makes its cache key run-independent.
Flows call stages through `run_stage`, which applies the run options: `force`
(recompute named stages), retries, and the test-only failure injection.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from prefect import Task, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks import datasets as datasets_stage
from tasks import evaluate as evaluate_stage
from tasks import finetune as finetune_stage
from tasks import ingest as ingest_stage
from tasks import tokenize as tokenize_stage
from tasks import update as update_stage
from tasks.core import (
    SourceSpec,
    StageResult,
    StageSpec,
    config_hash,
    content_digest,
    maybe_fail,
    result_of,
    stage_task,
)
from tasks.evaluate import EvaluateConfig
from tasks.finetune import FinetuneConfig
from tasks.profiles import BfclSubset, Profile, resolve_profile, write_bfcl_subset
from tasks.retention import RetentionConfig, RetentionReport, retain
from tasks.tokenize import TokenizeConfig
from tasks.update import UpdateConfig
from toolweaver.align.datasets import DatasetConfig
from toolweaver.align.train import STAGES as FINETUNE_STAGES
from toolweaver.align.train import Stage
from toolweaver.codes.embed import EmbedConfig
from toolweaver.eval.dense import DenseConfig
from toolweaver.eval.methods import MethodsConfig
from toolweaver.eval.report import markdown_table

logger = logging.getLogger(__name__)

CATALOG_EVENT = "toolweaver.catalog.changed"


# --------------------------------------------------------------------------- configs


class RunOptions(BaseModel):
    """How to run (not what to compute): never part of a cache key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    force: tuple[str, ...] = Field(default=(), description="stages to recompute regardless of the cache")
    retries: int = Field(default=0, ge=0, description="retries per stage on failure (transient errors)")
    retry_delay_s: float = Field(default=10.0, ge=0)
    fail_stage: str | None = Field(default=None, description="TEST ONLY: make this stage fail before it runs")


class BuildConfig(BaseModel):
    """Parameters of the `build` flow (validated by Prefect)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str | None = Field(default=None, description="artifact store root; None = $TOOLWEAVER_HOME or ./artifacts")
    profile: Literal["quick", "full", "auto"] | Profile = Field(
        default="auto", description="a named profile, 'auto' (full with CUDA, else quick), or a custom Profile"
    )
    sources: tuple[SourceSpec, ...] = Field(
        default=(), description="tool/data sources; empty = the embedded default (BFCL from bfcl-eval)"
    )
    run: RunOptions = RunOptions()
    retention: RetentionConfig | None = Field(
        default=None, description="after the build, prune old checkpoints and vacuum old Delta files; None = keep all"
    )
    update: UpdateConfig = Field(
        default=UpdateConfig(), description="when tools were added: continue the last model on new + replayed examples"
    )


class BuildPlan(BaseModel):
    """A BuildConfig resolved once at the entry point: absolute store, profile, sources."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str
    profile: Profile
    sources: tuple[SourceSpec, ...]
    run: RunOptions
    retention: RetentionConfig | None = None
    update: UpdateConfig = UpdateConfig()
    evaluate: EvaluateConfig
    eval_datasets: tuple[str, ...] = Field(description="query sets to evaluate: the ingested sources")

    @model_validator(mode="after")
    def _known_stages(self) -> BuildPlan:
        unknown = sorted(set(self.run.force) - set(STAGES))
        if self.run.fail_stage is not None and self.run.fail_stage not in STAGES:
            unknown.append(self.run.fail_stage)
        if unknown:
            raise ValueError(f"unknown stage name(s) {unknown}; stages are {sorted(STAGES)}")
        return self


class BuildResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: str
    store: str
    stages: tuple[StageResult, ...]
    summary_markdown: str


# --------------------------------------------------------------------------- resolution


def bfcl_data_dir() -> Path:
    """The data folder of the installed `bfcl-eval` package, found without importing it
    (its __init__ pulls heavy dependencies)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package bfcl-eval is not installed; run `make setup` (pip install --no-deps bfcl-eval)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not data.is_dir():
        raise RuntimeError(f"bfcl-eval is installed but has no data folder at {data}")
    return data


def default_sources() -> tuple[SourceSpec, ...]:
    return (resolve_source(SourceSpec(source="bfcl")),)


def resolve_source(spec: SourceSpec) -> SourceSpec:
    """An absolute path for a source (`bfcl` without a path = the installed package's data)."""
    path = bfcl_data_dir() if spec.path is None else Path(spec.path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"source {spec.source!r}: path {path} does not exist")
    return SourceSpec(source=spec.source, path=path)


def resolve_store(store: str | None) -> str:
    root = store or os.environ.get("TOOLWEAVER_HOME") or "artifacts"
    return str(Path(root).expanduser().resolve())


def resolve_plan(config: BuildConfig) -> BuildPlan:
    sources = tuple(resolve_source(s) for s in config.sources) or default_sources()
    profile = config.profile if isinstance(config.profile, Profile) else resolve_profile(config.profile)
    return BuildPlan(
        store=resolve_store(config.store),
        profile=profile,
        sources=sources,
        run=config.run,
        retention=config.retention,
        update=config.update,
        evaluate=evaluate_config(profile),
        eval_datasets=tuple(sorted({s.source for s in sources})),
    )


def evaluate_config(profile: Profile) -> EvaluateConfig:
    dense = DenseConfig(device=profile.device)
    return EvaluateConfig(methods=profile.eval_methods, method_configs=MethodsConfig(dense=dense))


# --------------------------------------------------------------------------- stage functions


def _open_store(store: str) -> Any:
    from prefect.runtime import flow_run

    from storage import Store

    # The flow run id goes into every lineage row this stage writes.
    return Store(root=store, run_id=flow_run.id)


def _ingest(
    store: str, sources: tuple[SourceSpec, ...], bfcl_subset: BfclSubset | None, inject_failure: bool = False
) -> StageResult:
    """Ingest every source into the unified tables (BFCL cut to the profile's subset)."""
    maybe_fail("ingest", inject_failure)
    st = _open_store(store)
    refs: dict[str, Any] = {}
    for src in sources:
        path = _profile_cut(store, src, bfcl_subset)
        for ref in ingest_stage.ingest_source(st, source=src.source, path=path):
            refs[ref.table] = ref  # later sources' versions supersede earlier ones
    return result_of("ingest", refs.values())


def _profile_cut(store: str, src: SourceSpec, subset: BfclSubset | None) -> Path | None:
    """The folder to ingest: the source itself, or for `bfcl` with a subset, the cut of
    it materialised under `<store>/sources/` (same layout, so record origins match)."""
    if subset is None or src.source != "bfcl":
        return src.path
    assert src.path is not None, "sources are resolved before they reach a task"
    tag = hashlib.sha256(f"{src.path}\0{config_hash(subset)}".encode()).hexdigest()[:12]
    return write_bfcl_subset(src.path, Path(store) / "sources" / f"bfcl-subset-{tag}", subset)


def _embed(
    store: str, upstream: tuple[StageResult, ...], config: EmbedConfig, inject_failure: bool = False
) -> StageResult:
    """Embed the `tools` docs that have no vector under this model yet (only new docs)."""
    maybe_fail("embed", inject_failure)
    ref, n_embedded = tokenize_stage.embed_tools(_open_store(store), config)
    return result_of("embed", [ref] if ref is not None else [], embedded=n_embedded)


def _cousage(store: str, upstream: tuple[StageResult, ...], inject_failure: bool = False) -> StageResult:
    """Co-usage edges from qrels + trajectories."""
    maybe_fail("cousage", inject_failure)
    return result_of("cousage", [tokenize_stage.build_cousage(_open_store(store))])


def _codes(
    store: str, upstream: tuple[StageResult, ...], config: TokenizeConfig, inject_failure: bool = False
) -> StageResult:
    """Train the RQ-VAE and assign unique codes; with existing codes, place only new tools."""
    maybe_fail("codes", inject_failure)
    result = tokenize_stage.tokenize(_open_store(store), config)
    facts = {"mode": result.mode, "new_codes": result.n_new_codes, "codes_version": result.codes_version}
    facts |= {k: v for k, v in result.metrics.items() if isinstance(v, int | float | str | bool)}
    return result_of("codes", result.refs.values(), checkpoints=[result.codes_version], **facts)


def _datasets(
    store: str, upstream: tuple[StageResult, ...], config: DatasetConfig, inject_failure: bool = False
) -> StageResult:
    """ShareGPT examples (memorization, retrieval, trajectory) -> `sft_examples`, `sft_rejects`."""
    maybe_fail("datasets", inject_failure)
    from prefect.runtime import flow_run

    built = datasets_stage.build_datasets_stage(_open_store(store), config, run_id=flow_run.id)
    return result_of(
        "datasets", [built.examples, built.rejects], **{f"examples.{k}": v for k, v in built.counts.items()}
    )


def _finetune(
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
    from the newest one (tasks.finetune), so retries and re-runs never repeat steps.
    """
    maybe_fail(f"finetune-{stage}", inject_failure)
    from prefect.runtime import flow_run

    st = _open_store(store)
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
    The first stage starts from the previous model when tools were added since it.
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
    new_codes = update_stage.new_tool_codes(st, previous.known_tools) if previous else {}
    if previous is None or not new_codes:
        return None, finetune_stage.SFT_EXAMPLES, {}
    _, counts = update_stage.write_update_examples(st, new_codes, update, run_id=run_id)
    logger.info("finetune-%s: %d new tools, continuing %s (%s)", stage, len(new_codes), previous.checkpoint_id, counts)
    return (
        previous.checkpoint_id,
        update_stage.SFT_UPDATE,
        {"update_from": previous.checkpoint_id, "new_tools": len(new_codes), **counts},
    )


def _evaluate(
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
    st = _open_store(store)
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

SUMMARY_SQL: dict[str, str] = {
    "tools per source": "SELECT source, count(*) AS tools FROM tools GROUP BY source ORDER BY source",
    "queries per source": "SELECT source, split, count(*) AS queries FROM queries GROUP BY ALL ORDER BY ALL",
    "quarantined records": "SELECT source, reason, count(*) AS records FROM quarantine GROUP BY ALL ORDER BY ALL",
}


def _summary(store: str, upstream: tuple[StageResult, ...], inject_failure: bool = False) -> StageResult:
    """Row counts of every table the upstream stages wrote, read back through SQL."""
    maybe_fail("summary", inject_failure)
    from storage import connect

    tables = sorted({t.table for r in upstream for t in r.tables})
    with connect(store) as con:
        facts: dict[str, str | int | float | bool | None] = {
            f"rows.{t}": int(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables
        }
    return StageResult(stage="summary", facts=facts)


# Pipeline order: the resume test fails each stage in turn and expects exactly the
# stages before it to be served from the cache.
STAGE_SPECS: tuple[StageSpec, ...] = (
    StageSpec(name="ingest", outputs=ingest_stage.TABLES, fn=_ingest, code=(ingest_stage.ingest,)),
    StageSpec(name="embed", outputs=("embeddings",), fn=_embed, code=(tokenize_stage.embed_tools,)),
    StageSpec(name="cousage", outputs=("cousage",), fn=_cousage, code=(tokenize_stage.build_cousage,)),
    StageSpec(name="codes", outputs=("codes",), fn=_codes, code=(tokenize_stage.tokenize,)),
    StageSpec(
        name="datasets",
        outputs=(datasets_stage.SFT_EXAMPLES,),
        fn=_datasets,
        code=(datasets_stage.build_datasets_stage,),
    ),
    *(
        StageSpec(
            name=f"finetune-{stage}",
            outputs=(finetune_stage.TRAIN_METRICS,),
            fn=_finetune,
            code=(finetune_stage.finetune_stage, update_stage.write_update_examples),
        )
        for stage in FINETUNE_STAGES
    ),
    StageSpec(name="evaluate", outputs=(evaluate_stage.TABLE,), fn=_evaluate, code=(evaluate_stage.evaluate,)),
    StageSpec(name="summary", outputs=(), fn=_summary),
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
    st = _open_store(store)
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


# --------------------------------------------------------------------------- reporting


def summary_markdown(plan: BuildPlan, stages: Sequence[StageResult]) -> str:
    lines = [
        f"# ToolWeaver build — profile `{plan.profile.name}`",
        "",
        f"{plan.profile.description}",
        "",
        f"Store: `{plan.store}`",
        "",
        "| stage | table | version | rows | digest |",
        "|---|---|---:|---:|---|",
    ]
    for r in stages:
        for t in r.tables:
            lines.append(f"| {r.stage} | `{t.table}` | {t.version} | {t.rows} | `{t.digest[:12]}` |")
        for c in r.checkpoints:
            lines.append(f"| {r.stage} | checkpoint `{c}` | | | |")
    facts = [(r.stage, k, v) for r in stages for k, v in sorted(r.facts.items())]
    if facts:
        lines += ["", "| stage | fact | value |", "|---|---|---|"]
        lines += [f"| {s} | {k} | {v} |" for s, k, v in facts]
    lines += ["", "Inspect the results with SQL:", "", "```bash"]
    lines.append(f'toolweaver tables --store "{plan.store}"')
    for sql in SUMMARY_SQL.values():
        lines.append(f'toolweaver sql "{sql}" --store "{plan.store}"')
    lines.append(f'toolweaver sql "SELECT * FROM history ORDER BY written_at DESC LIMIT 20" --store "{plan.store}"')
    lines += ["```", ""]
    return "\n".join(lines)


@task(name="report", cache_policy=NO_CACHE, persist_result=False)
def report(plan: BuildPlan, stages: tuple[StageResult, ...]) -> BuildResult:
    """Markdown run summary as a Prefect artifact; not cached (it writes no table)."""
    markdown = summary_markdown(plan, stages) + "".join(
        _eval_table(plan.store, r) for r in stages if r.stage == "evaluate"
    )
    create_markdown_artifact(markdown=markdown, key="toolweaver-build-summary", description="ToolWeaver build summary")
    return BuildResult(profile=plan.profile.name, store=plan.store, stages=stages, summary_markdown=markdown)


@task(name="retention", cache_policy=NO_CACHE, persist_result=False)
def retention(plan: BuildPlan) -> RetentionReport | None:
    """Apply the plan's retention setting (never cached: what it deletes depends on time)."""
    if plan.retention is None:
        return None
    report = retain(_open_store(plan.store), plan.retention)
    rows = [t.model_dump(mode="json") | {"kept_versions": ",".join(map(str, t.kept_versions))} for t in report.tables]
    create_table_artifact(
        table=rows, key="toolweaver-retention", description=f"retention: pruned {list(report.pruned_checkpoints)}"
    )
    return report


def _eval_table(store: str, evaluated: StageResult) -> str:
    """The evaluation table of the rows this build's evaluate stage appended."""
    ref = evaluated.table(evaluate_stage.TABLE)
    rows = _open_store(store).read(ref.table, version=ref.version).to_pylist()
    latest = max(r["evaluated_at"] for r in rows)
    return "\n## Evaluation\n\n" + markdown_table([r for r in rows if r["evaluated_at"] == latest])


class ProgressArtifact:
    """Progress hook for long loops (training): a Prefect progress artifact updated in place.

    Pass `hook.update` to a stage function as its progress callback; it is a no-op
    outside a Prefect run context so the same stage runs from a notebook.
    """

    def __init__(self, description: str, total: int, key: str | None = None) -> None:
        if total <= 0:
            raise ValueError(f"progress total must be positive, got {total}")
        self.total = total
        self._id: Any = None
        try:
            self._id = create_progress_artifact(progress=0.0, key=key, description=description)
        except Exception as exc:  # noqa: BLE001 - reporting must not kill training; say so loudly
            logger.warning(
                "progress artifact unavailable (%s: %s); progress goes to the log only", type(exc).__name__, exc
            )

    def update(self, done: int) -> None:
        pct = 100.0 * min(done, self.total) / self.total
        if self._id is not None:
            update_progress_artifact(artifact_id=self._id, progress=pct)
        logger.info("progress %.1f%% (%d/%d)", pct, done, self.total)


class TrainingProgress:
    """`progress(step, total)` hook of a training stage -> one Prefect progress artifact
    (key `toolweaver-<stage>-progress`), created at the first step, when the total is known."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.artifact: ProgressArtifact | None = None

    def update(self, step: int, total: int) -> None:
        if self.artifact is None:
            description = f"{self.stage}: optimizer steps done of {total}"
            self.artifact = ProgressArtifact(description, total, key=f"toolweaver-{self.stage}-progress")
        self.artifact.update(step)


# --------------------------------------------------------------------------- catalog sensor


class CatalogState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    digest: str
    previous: str | None
    changed: bool


def catalog_key(sources: Sequence[SourceSpec], store: str | None = None) -> str:
    """A stable name for a set of watched sources feeding one store (a Prefect Variable
    name: [a-z0-9_-])."""
    import hashlib

    ident = "\n".join(sorted(f"{s.source}\0{resolve_source(s).path}" for s in sources))
    ident += f"\n{resolve_store(store)}"
    return "toolweaver-catalog-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


@task(name="catalog-digest", cache_policy=NO_CACHE, persist_result=False)
def catalog_digest(sources: tuple[SourceSpec, ...]) -> str:
    """Content digest of every watched source, in a stable order."""
    import hashlib

    parts = sorted(f"{s.source}\0{content_digest(resolve_source(s).path)}" for s in sources)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@task(name="emit-if-changed", cache_policy=NO_CACHE, persist_result=False)
def emit_if_changed(
    sources: tuple[SourceSpec, ...],
    digest: str,
    profile: Literal["quick", "full", "auto"] | Profile = "auto",
    store: str | None = None,
) -> CatalogState:
    """Emit `toolweaver.catalog.changed` when the digest differs from the last one seen.

    The last digest lives in a Prefect Variable named after the watched sources, so
    the sensor is stateless between runs. The payload carries the digest, the resolved
    sources, the build profile and the store: the `on-catalog-change` trigger rebuilds
    with them. The first observation counts as a change: the rebuild it triggers is all
    cache hits when a build already ran on this data.
    """
    from prefect.events import emit_event
    from prefect.variables import Variable

    key = catalog_key(sources, store)
    previous = Variable.get(key, default=None)
    changed = previous != digest
    if changed:
        event = emit_event(
            event=CATALOG_EVENT,
            resource={"prefect.resource.id": f"toolweaver.catalog.{key}", "prefect.resource.name": key},
            payload={
                "digest": digest,
                "previous": previous,
                "sources": [{"source": r.source, "path": str(r.path)} for r in map(resolve_source, sources)],
                "profile": profile.model_dump(mode="json") if isinstance(profile, Profile) else profile,
                # Resolved here (the sensor's $TOOLWEAVER_HOME): the rebuild writes where the sensor looked.
                "store": resolve_store(store),
            },
        )
        if event is None:
            raise RuntimeError(f"could not emit {CATALOG_EVENT}: no Prefect events client is configured")
        Variable.set(key, digest, overwrite=True)
        logger.info("catalog %s changed: %s -> %s (event %s)", key, previous, digest, event.id)
    else:
        logger.info("catalog %s unchanged (%s)", key, digest)
    return CatalogState(digest=digest, previous=previous, changed=changed)
