"""Lifecycle acceptance through the flows: a build on an OpenAPI catalog (watched as a
full snapshot, plus a small BFCL cut for queries), then a snapshot with 5 operations
edited and 5 removed, then the rebuild: 5 re-embedded, 0 codes changed, 5 retired; the
rebuild continues the last model on the edited tools' new examples; `toolweaver
retrieve` (constrained decoding) never returns a retired tool and finds the edited ones
by their new documentation. 21 min measured on the shared 2-core CPU (load ~12), so `slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows.conftest import TINY_RQVAE, stage_states
from tests.flows.lifecycle_catalog import (
    MEMORIZING_TRAIN,
    catalog_texts,
    operation_ids,
    save_memorizing_model,
    tool_id,
    write_spec,
)
from tests.flows.test_update import codes_of, top5

pytestmark = pytest.mark.usefixtures("prefect_harness")

N = 20
OPS = operation_ids(N)
EDITED, REMOVED, KEPT = OPS[:5], OPS[5:10], OPS[10:]


def memorization_prompts(store: Path, version: int | None = None) -> dict[str, str]:
    from storage import Store

    rows = Store(root=store).read("sft_examples", version=version).to_pylist()
    return {
        r["example_id"].removeprefix("memorization/"): json.loads(r["conversations"])[0]["content"]
        for r in rows
        if r["stage"] == "memorization"
    }


@pytest.fixture()
def catalog_profile(tmp_path: Path, bfcl_subset: Path):
    from tasks.prefect.profiles import Profile
    from tasks.stages.finetune import FinetuneConfig
    from tasks.stages.tokenize import TokenizeConfig
    from toolweaver.align.train import TrainConfig
    from toolweaver.codes.embed import EmbedConfig

    texts = [p.read_text(encoding="utf-8") for p in sorted(bfcl_subset.rglob("*.json"))] + catalog_texts(N)
    folder = save_memorizing_model(tmp_path / "tiny-llm", texts)
    return Profile(
        name="test-lifecycle",
        device="cpu",
        description="flow tests: a tiny model that memorizes its codes",
        tokenize=TokenizeConfig(embed=EmbedConfig(device="cpu", show_progress=False), rqvae=TINY_RQVAE),
        finetune=FinetuneConfig(model=str(folder), stages=("memorization",), train=TrainConfig(**MEMORIZING_TRAIN)),
        eval_methods=("bm25",),
        eval_llm=False,
    )


@pytest.mark.slow
def test_edited_and_removed_tools_rebuild(tmp_path: Path, catalog_profile, bfcl_subset: Path) -> None:
    from flows.build import build
    from flows.catalog import rebuild
    from storage import Store
    from tasks.prefect.plan import BuildConfig
    from tasks.prefect.results import SourceSpec

    spec = write_spec(tmp_path / "catalog" / "acme.json", OPS)
    store = tmp_path / "store"
    sources = (SourceSpec(source="bfcl", path=bfcl_subset), SourceSpec(source="openapi", path=spec, snapshot=True))
    config = BuildConfig(store=str(store), profile=catalog_profile, sources=sources)
    first = build(config)
    old_codes = codes_of(store)
    (first_model,) = next(r for r in first.stages if r.stage == "finetune-memorization").checkpoints
    old_prompts = memorization_prompts(store)
    examples_v1 = Store(root=store).latest("sft_examples").version

    write_spec(spec, [*EDITED, *KEPT], edited=EDITED)
    state = rebuild(config, "digest-after-editing-5-removing-5", return_state=True)
    assert state.is_completed(), state.message
    stages = {r.stage: r for r in state.result().stages}
    states = stage_states(state.state_details.flow_run_id)

    ingested = stages["ingest"].facts
    assert (ingested["tools_added"], ingested["tools_changed"], ingested["tools_retired"]) == (0, 5, 5)
    assert stages["embed"].facts["embedded"] == 5  # the 5 edited docs, nothing else
    assert codes_of(store) == old_codes  # 0 codes changed (retired rows kept: never reused)
    tuned = stages["finetune-memorization"]
    assert states["finetune-memorization"] == "Completed"
    assert tuned.facts["update_from"] == first_model  # continues the last model
    assert (tuned.facts["new_tools"], tuned.facts["changed_tools"], tuned.facts["retired_tools"]) == (0, 5, 5)
    assert tuned.facts["memorization.new"] == 5 and tuned.facts["memorization.replay"] == 5

    retired = {tool_id(op) for op in REMOVED}
    new_prompts = memorization_prompts(store)
    assert retired.isdisjoint(new_prompts) and len(memorization_prompts(store, examples_v1)) == len(old_prompts)
    for tool in sorted(retired):  # the old documentation of a retired tool no longer finds it
        assert retired.isdisjoint(top5(store, old_prompts[tool])), tool
    for op in EDITED:  # the new documentation of an edited tool finds it
        results = top5(store, new_prompts[tool_id(op)])
        assert tool_id(op) in results and retired.isdisjoint(results), op
