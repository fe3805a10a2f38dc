"""The agent loop end to end with a tiny model built in code: trained to 100% on a
handful of BFCL conversations it reproduces their calls (and bfcl-eval's multi-turn
checker accepts them); an untrained one does not; a tool without an executor gets the
"no executor" observation and the loop goes on."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.agent.helpers import char_tokenizer, train_to_memorise
from toolweaver.agent.catalog import CatalogTool, build_catalog
from toolweaver.agent.executors import NO_EXECUTOR, BfclExecutor
from toolweaver.agent.loop import Agent, AgentConfig, transcript
from toolweaver.align.datasets import DatasetConfig
from toolweaver.align.splits import bfcl_half
from toolweaver.align.tiny import tiny_llama
from toolweaver.align.vocab import FINISH_TOKEN
from toolweaver.eval.calls import call_string, load_category, score_multi_turn
from toolweaver.ingest.bfcl import CLASS_DOC_FILES, default_data_dir, parse_call

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed")

SHORT = DatasetConfig(max_doc_chars=24, max_observation_chars=24)
CONFIG = AgentConfig(max_steps=4, dataset=SHORT)
NO_EXECUTOR_TOOL = {"tool_id": "bfcl&&file_report", "tool_name": "bfcl", "api_name": "file_report", "source": "bfcl"}


def _conversations(n: int) -> list[dict]:
    """The `n` train-half file-system conversations with the fewest call characters."""
    entries = load_category(default_data_dir(), "multi_turn_base")
    chosen = [e for e in entries if bfcl_half(e["id"]) == "train" and e["involved_classes"] == ["GorillaFileSystem"]]
    return sorted(chosen, key=lambda e: (sum(len(c) for t in e["ground_truth"] for c in t), e["id"]))[:n]


def _catalog() -> list[CatalogTool]:
    """The file-system class's documents plus one tool no executor knows, coded `<a_i><b_j>`."""
    path = default_data_dir() / "multi_turn_func_doc" / f"{CLASS_DOC_FILES['GorillaFileSystem']}.json"
    docs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [
        {
            "tool_id": f"bfcl&&{d['name']}",
            "tool_name": "bfcl",
            "api_name": d["name"],
            "description": d["description"],
            "parameters": json.dumps(d["parameters"]),
            "source": "bfcl",
        }
        for d in docs
    ]
    rows.append(
        {**NO_EXECUTOR_TOOL, "description": "File a report", "parameters": '{"type": "dict", "properties": {}}'}
    )
    codes = {
        row["tool_id"]: f"<a_{i // 4}><b_{i % 4}>" for i, row in enumerate(sorted(rows, key=lambda r: r["tool_id"]))
    }
    return build_catalog(rows, codes, SHORT)


def _turns(entry: dict, by_name: dict[str, CatalogTool]) -> list[tuple[str, list]]:
    """(user text, [(tool, arguments)]) per turn; the first turn also files a report (a
    tool without an executor) before its ground-truth calls."""
    turns = []
    for index, (messages, calls) in enumerate(zip(entry["question"], entry["ground_truth"], strict=True)):
        text = "\n".join(m["content"] for m in messages if m["role"] == "user")
        parsed = [parse_call(c) for c in calls]
        steps = [(by_name[name], args) for name, args in parsed]
        if index == 0:
            steps.insert(0, (by_name["file_report"], {}))
        turns.append((text, steps))
    return turns


def _model_and_tokenizer(texts: list[str], catalog: list[CatalogTool], seed: int):
    tokenizer = char_tokenizer(texts)
    tokenizer.add_tokens(sorted({t.code[:5] for t in catalog} | {t.code[5:] for t in catalog}) + [FINISH_TOKEN])
    return tiny_llama(len(tokenizer), seed=seed, hidden_size=64), tokenizer


@pytest.fixture(scope="module")
def setup():
    entries = _conversations(2)
    catalog = _catalog()
    by_name = {t.name: t for t in catalog}
    turns = {e["id"]: _turns(e, by_name) for e in entries}
    conversations = [
        transcript(turns[e["id"]], BfclExecutor(e["initial_config"], e["involved_classes"]), CONFIG) for e in entries
    ]
    texts = [m["content"] for c in conversations for m in c]
    trained, tokenizer = _model_and_tokenizer(texts, catalog, seed=0)
    steps = train_to_memorise(trained, tokenizer, conversations)
    untrained, _ = _model_and_tokenizer(texts, catalog, seed=1)
    return entries, catalog, turns, tokenizer, trained, untrained, steps


def _run(model, tokenizer, catalog, entry, turns):
    agent = Agent(model, tokenizer, catalog)
    executor = BfclExecutor(entry["initial_config"], entry["involved_classes"])
    return agent.run([text for text, _ in turns], executor, CONFIG)


def test_trained_model_reproduces_the_calls(setup) -> None:
    entries, catalog, turns, tokenizer, trained, _, _ = setup
    for entry in entries:
        episode = _run(trained, tokenizer, catalog, entry, turns[entry["id"]])
        expected = [[(tool.name, args) for tool, args in steps] for _, steps in turns[entry["id"]]]
        assert [[(c.name, c.arguments) for c in turn] for turn in episode.turns] == expected
        assert all(episode.finished)
        # the tool without an executor was told so, and the loop went on to the next call
        first = episode.turns[0]
        assert first[0].observation == NO_EXECUTOR.format(name="file_report") and len(first) > 1
        # bfcl-eval's multi-turn checker accepts the executed calls (report calls left out)
        executed = [
            [[call_string(c.name, c.arguments) for c in turn if c.name != "file_report"]] for turn in episode.turns
        ]
        assert score_multi_turn(entry, executed)


def test_untrained_model_does_not(setup) -> None:
    entries, catalog, turns, tokenizer, _, untrained, _ = setup
    for entry in entries:
        episode = _run(untrained, tokenizer, catalog, entry, turns[entry["id"]])
        expected = [[(tool.name, args) for tool, args in steps] for _, steps in turns[entry["id"]]]
        assert [[(c.name, c.arguments) for c in turn] for turn in episode.turns] != expected
        # whatever it calls is a real tool with schema-valid arguments
        assert all(c.schema_valid and c.tool_id in {t.tool_id for t in catalog} for c in episode.calls)


def test_loop_format_is_the_trajectory_stage_format() -> None:
    """Without observations (BFCL's ground truth records none), the loop's conversation for
    a conversation's ground-truth calls is exactly the trajectory stage's training example."""
    from toolweaver.align.datasets import trajectory_messages
    from toolweaver.ingest import bfcl

    result = bfcl.parse()
    entry = _conversations(1)[0]
    (traj,) = [t for t in result.trajectories if t.query_id.endswith("/" + entry["id"])]
    used = set(traj.tool_ids)
    tools = {t.tool_id: {**_asdict(t), "source": "bfcl"} for t in result.tools if t.tool_id in used}
    codes = {tool_id: f"<a_{i}><b_{i}>" for i, tool_id in enumerate(sorted(used))}
    expected, _ = trajectory_messages(_asdict(traj), codes, tools, SHORT)
    catalog = {t.name: t for t in build_catalog(tools.values(), codes, SHORT)}
    turns = [
        (
            "\n".join(m["content"] for m in messages if m["role"] == "user"),
            [(catalog[n], a) for n, a in map(parse_call, calls)],
        )
        for messages, calls in zip(entry["question"], entry["ground_truth"], strict=True)
    ]
    assert transcript(turns, config=CONFIG.model_copy(update={"observe": False})) == expected


def _asdict(record) -> dict:
    return {name: getattr(record, name) for name in record.__slots__}
