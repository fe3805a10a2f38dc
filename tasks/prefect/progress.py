"""Progress hooks for long loops: Prefect progress artifacts updated in place."""

from __future__ import annotations

import logging
from typing import Any

from prefect.artifacts import create_progress_artifact, update_progress_artifact

logger = logging.getLogger(__name__)


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
