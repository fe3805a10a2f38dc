"""The build's plan: what a `build` run computes, resolved once at the entry point.

`BuildConfig` is what users set (flow parameters, validated by Prefect); `resolve_plan`
turns it into a `BuildPlan` with an absolute store, a resolved profile (device
included) and absolute source paths, which every stage task then receives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from storage import default_root
from tasks.prefect.profiles import Profile, resolve_profile
from tasks.prefect.results import SourceSpec, StageResult
from tasks.stages.evaluate import EvaluateConfig
from tasks.stages.retention import RetentionConfig
from tasks.stages.update import UpdateConfig
from toolweaver.eval.dense import DenseConfig
from toolweaver.eval.methods import MethodsConfig
from toolweaver.ingest.bfcl import default_data_dir


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
        from tasks.prefect.registry import STAGES  # the registry needs BuildPlan: import at use

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


def default_sources() -> tuple[SourceSpec, ...]:
    return (resolve_source(SourceSpec(source="bfcl")),)


def resolve_source(spec: SourceSpec) -> SourceSpec:
    """An absolute path for a source (`bfcl` without a path = the installed package's data)."""
    path = default_data_dir() if spec.path is None else Path(spec.path).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"source {spec.source!r}: path {path} does not exist")
    return SourceSpec(source=spec.source, path=path, snapshot=spec.snapshot)


def resolve_store(store: str | None) -> str:
    """The absolute store root (`storage.default_root`'s rule)."""
    return str(default_root(store).resolve())


def resolve_plan(config: BuildConfig) -> BuildPlan:
    sources = tuple(resolve_source(s) for s in config.sources) or default_sources()
    profile = config.profile if isinstance(config.profile, Profile) else resolve_profile(config.profile)
    profile = profile.on_device()
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
