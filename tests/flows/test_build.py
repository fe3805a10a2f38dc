"""Resume, idle rebuild, content change, force and wiped store, through real flow runs.

Every test builds small real BFCL data into its own store; the stage list comes from
`tasks.prefect.registry.STAGE_SPECS`, so stages added to the pipeline are covered here
without new tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.flows.conftest import edit_first_description, stage_states

pytestmark = pytest.mark.usefixtures("prefect_harness")


# Stage order of the tiny profile's build (tests/flows/conftest.py: tiny_profile).
PIPELINE = ["ingest", "embed", "cousage", "codes", "datasets", "finetune-memorization", "evaluate", "summary"]


@pytest.fixture()
def config(tiny_profile, store_dir: Path, bfcl_subset: Path):
    """`config(**run_options)` -> a BuildConfig of the tiny profile over this test's data and store."""
    from tasks.prefect.plan import BuildConfig, RunOptions
    from tasks.prefect.results import SourceSpec

    def make(retention: dict | None = None, **run: object) -> BuildConfig:
        sources = (SourceSpec(source="bfcl", path=bfcl_subset),)
        return BuildConfig(
            store=str(store_dir), profile=tiny_profile, sources=sources, run=RunOptions(**run), retention=retention
        )

    return make


def test_pipeline_order_matches_the_plan(config) -> None:
    from tasks.prefect.plan import resolve_plan
    from tasks.prefect.registry import planned_stages

    assert planned_stages(resolve_plan(config())) == PIPELINE


def _run(flow, *args):
    state = flow(*args, return_state=True)
    assert state.is_completed(), f"flow run failed: {state.message}"
    states = stage_states(state.state_details.flow_run_id)
    return state.result(), {name: states.get(name) for name in PIPELINE}


def _versions(store: Path) -> dict[str, int]:
    from storage import Store

    return {ref.table: ref.version for ref in Store(root=store).tables()}


# The default run fails a middle stage (both cached and recomputed stages follow);
# `-m slow` fails every stage in turn.
QUICK_FAILURES = {"codes"}


@pytest.mark.parametrize(
    "failing", [s if s in QUICK_FAILURES else pytest.param(s, marks=pytest.mark.slow) for s in PIPELINE]
)
def test_resume_recomputes_only_the_failed_stage_and_after(failing: str, config) -> None:
    from flows.build import build
    from tasks.prefect.cache import InjectedFailure

    k = PIPELINE.index(failing)
    with pytest.raises(InjectedFailure, match=failing):
        build(config(fail_stage=failing))
    _, states = _run(build, config())
    assert states == {s: ("Cached" if i < k else "Completed") for i, s in enumerate(PIPELINE)}


def test_idle_rebuild_is_all_cached_then_force_recomputes_the_named_stage(config, store_dir: Path) -> None:
    from flows.build import build
    from flows.catalog import rebuild

    first, states = _run(build, config())
    assert set(states.values()) == {"Completed"}
    _assert_training_progress_artifact(first)
    before = _versions(store_dir)
    again, states = _run(rebuild, config(), "digest-unchanged")
    assert set(states.values()) == {"Cached"}
    assert _versions(store_dir) == before
    assert again.stages == first.stages

    _, states = _run(build, config(force=("summary",)))
    assert states == {s: ("Completed" if s == "summary" else "Cached") for s in PIPELINE}
    assert _versions(store_dir) == before


def test_changed_bytes_at_the_same_path_recompute_downstream(config, store_dir: Path, bfcl_subset: Path) -> None:
    from flows.build import build

    first, _ = _run(build, config())
    # Same bytes rewritten (new mtime): content digest unchanged, everything cached.
    for f in bfcl_subset.rglob("*.json"):
        f.write_bytes(f.read_bytes())
    _, states = _run(build, config())
    assert set(states.values()) == {"Cached"}

    before = _versions(store_dir)
    edit_first_description(bfcl_subset)
    # This rebuild also applies retention: 1 checkpoint per stage, superseded files now.
    second, states = _run(build, config(retention={"keep_checkpoints": 1, "retention_hours": 0}))
    # One tool doc changed: everything downstream of `tools` runs again. A BFCL tool is one
    # function document (name + doc digest), so the edited doc is a new tool id and the
    # qrels that named it, hence the co-usage graph, change too.
    assert states == dict.fromkeys(PIPELINE, "Completed")
    after = _versions(store_dir)
    # Only the tables whose content changed got a new version.
    assert after["tools"] == before["tools"] + 1
    assert after["queries"] == before["queries"]
    assert second.stages[0].table("tools").digest != first.stages[0].table("tools").digest
    _assert_retention_kept_what_is_in_use(store_dir, first, second)


def _assert_training_progress_artifact(result) -> None:
    """The fine-tuning task published a progress artifact and left it at 100%."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    (tuned,) = [r for r in result.stages if r.stage == "finetune-memorization"]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["toolweaver-finetune-memorization-progress"]))
        )
    assert found, "no training progress artifact"
    latest = max(found, key=lambda a: a.created)
    assert latest.type == "progress" and float(latest.data) == 100.0
    assert f"of {tuned.facts['steps']}" in (latest.description or "")


def _assert_retention_kept_what_is_in_use(store_dir: Path, first, second) -> None:
    """After the retention of the second build: the first build's model folder is pruned
    (row kept, present = false), the examples it was trained on are vacuumed, and the
    tools version the (still current) tokenizer was trained on stays readable."""
    from storage import Store

    store = Store(root=store_dir)
    (old_model,) = next(r for r in first.stages if r.stage == "finetune-memorization").checkpoints
    (new_model,) = next(r for r in second.stages if r.stage == "finetune-memorization").checkpoints
    present = {r["checkpoint_id"]: r["present"] for r in store.checkpoints().to_pylist()}
    assert present[old_model] is False and present[new_model] is True
    old_examples = first.stages[4].table("sft_examples").version
    assert old_examples < store.latest("sft_examples").version
    with pytest.raises(Exception):  # noqa: B017 - its Parquet files are gone
        store.read("sft_examples", version=old_examples)
    old_tools = first.stages[0].table("tools")
    assert store.read("tools", version=old_tools.version).num_rows == old_tools.rows


@pytest.mark.slow
def test_wiped_store_is_rebuilt_not_served_from_cache(config, store_dir: Path) -> None:
    from flows.build import build
    from tasks.prefect.registry import STAGES

    first, _ = _run(build, config())
    shutil.rmtree(store_dir)
    second, states = _run(build, config())
    # Every stage that writes tables runs again; a stage that writes none may stay
    # cached, since its inputs have the same content as before.
    assert {s: states[s] for s in states if STAGES[s].outputs} == {s: "Completed" for s in states if STAGES[s].outputs}
    assert _versions(store_dir)["tools"] == 0
    assert second.stages[0].table("tools").digest == first.stages[0].table("tools").digest


def test_unknown_stage_names_are_rejected(config) -> None:
    from tasks.prefect.plan import resolve_plan

    with pytest.raises(ValueError, match="unknown stage"):
        resolve_plan(config(force=("ingset",)))
