"""Rebuild after tools were added: only new docs embedded, old codes kept, the last model
continued on the new tools' examples plus a replay of old ones; new tools retrievable.

The same scenario runs by default through the real deployment path (sensor event ->
`on-catalog-change`) in test_deployment.py; this in-process version (≈ 2.5 min) is the
quick one to debug with, so it is `slow`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.flows.conftest import N_BASE_TOOLBENCH, stage_states, write_tool_files

pytestmark = pytest.mark.usefixtures("prefect_harness")


def codes_of(store: Path) -> dict[str, str]:
    from storage import Store

    table = Store(root=store).read("codes", columns=["tool_id", "code"])
    return dict(zip(table.column("tool_id").to_pylist(), table.column("code").to_pylist(), strict=True))


def memorization_prompts(store: Path, tool_ids: set[str]) -> dict[str, str]:
    """{tool_id: the tool's documentation prompt} from the latest sft_examples."""
    from storage import Store

    rows = Store(root=store).read("sft_examples").to_pylist()
    prompts = {}
    for r in rows:
        tool_id = r["example_id"].removeprefix("memorization/")
        if r["stage"] == "memorization" and tool_id in tool_ids:
            prompts[tool_id] = json.loads(r["conversations"])[0]["content"]
    assert set(prompts) == tool_ids
    return prompts


def top5(store: Path, query: str) -> list[str]:
    """`toolweaver retrieve` (constrained decoding with the newest checkpoint): top-5 tool ids."""
    from flows.cli import app

    out = CliRunner().invoke(
        app, ["retrieve", query, "--top-k", "5", "--store", str(store), "--device", "cpu", "--format", "json"]
    )
    assert out.exit_code == 0, out.output
    return [row["tool_id"] for row in json.loads(out.stdout)]


@pytest.mark.slow
def test_added_tools_continue_the_last_model(
    tmp_path: Path, memorizing_profile, one_api_tool_files, bfcl_subset
) -> None:
    from flows.build import build
    from flows.catalog import rebuild
    from tasks.prefect.plan import BuildConfig
    from tasks.prefect.results import SourceSpec

    watched = tmp_path / "tools"
    names = sorted(one_api_tool_files)
    write_tool_files(watched, {n: one_api_tool_files[n] for n in names[:N_BASE_TOOLBENCH]})
    store = tmp_path / "store"
    sources = (SourceSpec(source="bfcl", path=bfcl_subset), SourceSpec(source="toolbench", path=watched))
    config = BuildConfig(store=str(store), profile=memorizing_profile, sources=sources)
    first = build(config)
    old_codes = codes_of(store)
    (first_model,) = next(r for r in first.stages if r.stage == "finetune-memorization").checkpoints

    write_tool_files(watched, {n: one_api_tool_files[n] for n in names[N_BASE_TOOLBENCH:]})
    state = rebuild(config, "digest-after-adding-20", return_state=True)
    assert state.is_completed(), state.message
    second = state.result()
    states = stage_states(state.state_details.flow_run_id)
    stages = {r.stage: r for r in second.stages}

    new_codes = codes_of(store)
    added = set(new_codes) - set(old_codes)
    assert len(added) == 20
    assert stages["embed"].facts["embedded"] == 20
    assert {t: new_codes[t] for t in old_codes} == old_codes  # 0 old codes changed
    tuned = stages["finetune-memorization"]
    assert states["finetune-memorization"] == "Completed"
    assert tuned.facts["update_from"] == first_model and tuned.facts["new_tools"] == 20
    assert tuned.facts["memorization.new"] == 20 and tuned.facts["memorization.replay"] == 20
    for tool_id, prompt in memorization_prompts(store, added).items():
        assert tool_id in top5(store, prompt), tool_id
