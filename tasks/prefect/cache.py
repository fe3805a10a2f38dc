"""Content-digest caching for pipeline stages, and the `stage_task` helper.

Prefect's default cache policy includes the flow run id and hashes a path argument
as a string, so a new deployment run would recompute everything and a file changed
in place would not be noticed. Stages here are cached on what they actually depend
on instead:

    key = sha256(stage code + library version + every input's digest)

where an input's digest is its *content* digest: a `SourceSpec` (a file input) is
hashed by its bytes (a directory by every file's relative path and bytes), a
`StageResult` (an upstream stage's output) by the digests of the table versions it
wrote, a pydantic config by its canonical JSON, and a plain string (the store root)
by itself. Nothing run-specific enters the key, so a re-run after a failure re-uses
every completed stage (state `Cached`) and a changed input invalidates exactly the
stages downstream of it.

Tasks return `StageResult`s (`tasks.prefect.results`), persisted by Prefect as JSON.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel

import toolweaver
from tasks.digests import config_hash, content_digest, sha256_json
from tasks.prefect.results import SourceSpec, StageResult, TableVersion

logger = logging.getLogger(__name__)

# Parameters that steer a run but must not change what a stage computes.
NON_KEY_PARAMETERS: frozenset[str] = frozenset({"inject_failure"})


class InjectedFailure(RuntimeError):
    """Raised by a stage when a test asks it to fail (`RunOptions.fail_stage`)."""


def value_digest(value: Any) -> Any:
    """A JSON-able, content-based stand-in for a task input (see module docstring)."""
    if isinstance(value, SourceSpec):
        if value.path is None:
            raise ValueError(f"source {value.source!r} has no path yet: resolve it before it enters a cache key")
        key = {"source": value.source, "content": content_digest(value.path)}
        return key | {"snapshot": True} if value.snapshot else key  # plain specs keep their old keys
    if isinstance(value, StageResult):
        return {"stage": value.stage, "outputs": value.digest}
    if isinstance(value, TableVersion):
        return {"table": value.table, "digest": value.digest}
    if isinstance(value, BaseModel):
        return config_hash(value)
    if isinstance(value, Path):
        raise TypeError(
            f"a bare Path ({value}) cannot enter a cache key: wrap a file input in SourceSpec "
            "(hashed by content) or pass a str (an identity, e.g. the store root)"
        )
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): value_digest(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [value_digest(v) for v in value]
    raise TypeError(f"no content digest for task input of type {type(value).__name__}: {value!r}")


def inputs_digest(inputs: Mapping[str, Any], ignore: Iterable[str] = NON_KEY_PARAMETERS) -> str:
    skip = set(ignore)
    return sha256_json({k: value_digest(v) for k, v in sorted(inputs.items()) if k not in skip})


@functools.cache
def _module_source_digest(module_name: str) -> str:
    import sys

    module = sys.modules[module_name]
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()


def code_digest(*functions: Callable[..., Any]) -> str:
    """Digest of the code a stage runs: each function's source and its whole module.

    The module is included because a stage function calls helpers beside it.
    """
    parts = []
    for fn in functions:
        parts.append(inspect.getsource(fn))
        parts.append(_module_source_digest(fn.__module__))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def library_version() -> str:
    return toolweaver.__version__


# --------------------------------------------------------------------------- cache policy


@dataclass
class ContentCachePolicy(CachePolicy):
    """Run-independent cache key: stage code + library version + content digests of inputs."""

    code: str = ""
    ignore: frozenset[str] = field(default_factory=lambda: NON_KEY_PARAMETERS)

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = sha256_json(
            {"code": self.code, "library": library_version(), "inputs": inputs_digest(inputs, self.ignore)}
        )
        logger.debug("cache key %s for %s", key, task_ctx.task.name if task_ctx else "?")
        return key


@dataclass(frozen=True)
class StageSpec:
    """A stage: its name, the tables it writes (to detect a wiped store), its code."""

    name: str
    outputs: tuple[str, ...]
    fn: Callable[..., StageResult]
    code: tuple[Callable[..., Any], ...] = ()


# A stage waits this long for another run of the same stage on the same store (a
# fine-tuning stage on the full profile runs for hours).
STAGE_LOCK_TIMEOUT_S = 24 * 3600.0


def serialised(name: str, fn: Callable[..., StageResult]) -> Callable[..., StageResult]:
    """`fn(store, ...)` run under the store's lock for stage `name`.

    Table writes are atomic on their own, but a stage reads, computes and then writes
    (e.g. embed: "which docs lack a vector?" -> embed -> append): two runs of one stage
    on one store (two builds started together) would both append the same vectors. Under
    the lock the second run starts after the first finished and finds nothing left to do.
    """
    from storage.locks import file_lock

    @functools.wraps(fn)
    def run(store: str, *args: Any, **kwargs: Any) -> StageResult:
        with file_lock(Path(store) / ".locks" / f"stage-{name}.lock", timeout_s=STAGE_LOCK_TIMEOUT_S):
            return fn(store, *args, **kwargs)

    return run


def stage_task(spec: StageSpec, *, retries: int = 0, retry_delay_s: float = 10.0) -> Task[..., StageResult]:
    """A Prefect task running `spec.fn` (serialised per store and stage), cached by
    `ContentCachePolicy`, result persisted as JSON."""
    policy = ContentCachePolicy(code=code_digest(spec.fn, *spec.code))
    return task(
        serialised(spec.name, spec.fn),
        name=spec.name,
        task_run_name=spec.name,
        cache_policy=policy,
        persist_result=True,
        result_serializer="json",
        retries=retries,
        retry_delay_seconds=retry_delay_s,
        log_prints=True,
    )


def maybe_fail(stage: str, inject_failure: bool) -> None:
    """Test hook: fail the stage before it does any work."""
    if inject_failure:
        raise InjectedFailure(f"failure injected in stage {stage!r} (RunOptions.fail_stage)")
