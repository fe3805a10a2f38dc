"""Prefect artifacts made by the tasks layer: progress during long loops, run summary."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_progress_artifact_is_updated_in_place() -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from tasks.prefect.progress import ProgressArtifact

    @flow
    def loop() -> str:
        hook = ProgressArtifact("training", total=8)
        for done in (2, 6, 8, 9):  # past the end is clamped to 100%
            hook.update(done)
        return str(hook._id)

    artifact_id = loop()
    with get_client(sync_client=True) as client:
        artifact = client.read_artifacts()
    (progress,) = [a for a in artifact if str(a.id) == artifact_id]
    assert progress.type == "progress"
    assert float(progress.data) == 100.0


def test_progress_total_must_be_positive() -> None:
    from tasks.prefect.progress import ProgressArtifact

    with pytest.raises(ValueError, match="positive"):
        ProgressArtifact("x", total=0)


def test_summary_markdown_lists_tables_and_sql(tmp_path) -> None:
    from tasks.prefect.plan import BuildConfig, resolve_plan
    from tasks.prefect.profiles import QUICK
    from tasks.prefect.reporting import summary_markdown
    from tasks.prefect.results import StageResult, TableVersion

    plan = resolve_plan(BuildConfig(store=str(tmp_path), profile=QUICK))
    stages = (
        StageResult(stage="ingest", tables=(TableVersion(table="tools", version=3, digest="f" * 64, rows=12),)),
        StageResult(stage="codes", checkpoints=("ckpt-1",), facts={"new_codes": 12}),
    )
    md = summary_markdown(plan, stages)
    assert "profile `quick`" in md
    assert "| ingest | `tools` | 3 | 12 |" in md
    assert "checkpoint `ckpt-1`" in md and "| codes | new_codes | 12 |" in md
    assert f'toolweaver tables --store "{tmp_path.resolve()}"' in md
