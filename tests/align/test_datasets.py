"""ShareGPT dataset builders: known answers, rejects, splits, JSONL round trip, real data."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from toolweaver.align.datasets import (
    FINISH_DOC,
    DatasetConfig,
    assistant_codes,
    build_datasets,
    export_jsonl,
)
from toolweaver.align.splits import SplitConfig, assign_split
from toolweaver.align.vocab import FINISH_TOKEN, format_code, parse_code


def _tool(tool_id: str, description: str = "does things", source: str = "t") -> dict:
    tool_name, api_name = tool_id.split("&&")
    params = json.dumps({"required": [{"name": "q"}]})
    return {
        "tool_id": tool_id,
        "tool_name": tool_name,
        "api_name": api_name,
        "description": description,
        "parameters": params,
        "source": source,
    }


TOOLS = [_tool("QRCheck&&check", "Checks QR codes. " * 40), _tool("Weather&&now"), _tool("Mail&&send")]
CODES = [
    {"tool_id": "QRCheck&&check", "code": "<a_10><b_45>"},
    {"tool_id": "Weather&&now", "code": "<a_1><b_2>"},
    {"tool_id": "Mail&&send", "code": "<a_1><b_3>"},
]


def _conv(example: dict) -> list[dict]:
    return json.loads(example["conversations"])


def test_memorization_known_answer_and_truncation() -> None:
    config = DatasetConfig(stages=("memorization",), max_description_chars=50)
    built = build_datasets(tools=TOOLS, codes=CODES, config=config)
    by_id = {e["example_id"]: e for e in built.examples}
    conv = _conv(by_id["memorization/QRCheck&&check"])
    assert conv[0]["role"] == "user" and conv[0]["loss"] is False
    assert conv[0]["content"].startswith("Tool Name: QRCheck. API: check. Description: Checks QR codes.")
    assert len(conv[0]["content"]) <= len("Tool Name: QRCheck. API: check. Description: ") + 51
    assert conv[1] == {"role": "assistant", "content": "<a_10><b_45>", "loss": True}
    assert {e["split"] for e in built.examples} == {"train"} and len(built.examples) == 3


def test_tool_without_code_is_rejected_with_reason() -> None:
    built = build_datasets(tools=[*TOOLS, _tool("New&&x")], codes=CODES, config=DatasetConfig(stages=("memorization",)))
    assert len(built.examples) == 3
    assert built.rejects == [
        {"stage": "memorization", "source": "t", "query_id": None, "tool_id": "New&&x", "reason": "tool without a code"}
    ]


def test_retrieval_orders_by_relevance_then_tool_id_and_rejects() -> None:
    queries = [
        {"query_id": "s/train/1", "text": "check a qr and the weather", "source": "s", "split": "train"},
        {"query_id": "s/train/2", "text": "send mail with new tool", "source": "s", "split": "train"},
        {"query_id": "s/train/3", "text": "nothing relevant", "source": "s", "split": "train"},
    ]
    qrels = [
        {"query_id": "s/train/1", "tool_id": "Weather&&now", "relevance": 1},
        {"query_id": "s/train/1", "tool_id": "QRCheck&&check", "relevance": 1},
        {"query_id": "s/train/1", "tool_id": "Mail&&send", "relevance": 2},
        {"query_id": "s/train/1", "tool_id": "Mail&&send", "relevance": 2},  # duplicate row
        {"query_id": "s/train/2", "tool_id": "Mail&&send", "relevance": 1},
        {"query_id": "s/train/2", "tool_id": "New&&x", "relevance": 1},
    ]
    built = build_datasets(
        tools=TOOLS, codes=CODES, queries=queries, qrels=qrels, config=DatasetConfig(stages=("retrieval",))
    )
    assert len(built.examples) == 1
    example = built.examples[0]
    # Mail (relevance 2) first, then QRCheck < Weather by tool_id.
    assert _conv(example)[1]["content"] == "<a_1><b_3><a_10><b_45><a_1><b_2>"
    assert example["n_tools"] == 3 and example["query_id"] == "s/train/1"
    assert assistant_codes(example) == ["<a_1><b_3>", "<a_10><b_45>", "<a_1><b_2>"]
    reasons = {(r["query_id"], r["tool_id"], r["reason"]) for r in built.rejects}
    assert reasons == {
        ("s/train/2", "New&&x", "relevant tool without a code"),
        ("s/train/3", None, "query without relevant tools"),
    }


def test_duplicate_or_malformed_codes_fail_loudly() -> None:
    with pytest.raises(ValueError, match="shared by"):
        build_datasets(tools=TOOLS, codes=[*CODES, {"tool_id": "X&&y", "code": "<a_1><b_2>"}], config=DatasetConfig())
    with pytest.raises(ValueError, match="not a code"):
        build_datasets(tools=TOOLS, codes=[{"tool_id": "X&&y", "code": "a_1"}], config=DatasetConfig())


TOOLBENCH_MESSAGES = [
    {"role": "system", "content": "You are AutoGPT ... very long function list"},
    {"role": "user", "content": "\nWhat's the weather? Then mail it.\nBegin!\n"},
    {
        "role": "assistant",
        "content": "I should check the weather.",
        "function_call": {"name": "now_for_weather", "arguments": '{\n "city": "Paris"\n}'},
    },
    {"role": "function", "name": "now_for_weather", "content": '{"temp": 20}'},
    {"role": "assistant", "content": None, "function_call": {"name": "send_for_mail", "arguments": "{}"}},
    {"role": "function", "name": "send_for_mail", "content": "ok"},
    {
        "role": "assistant",
        "content": None,
        "function_call": {
            "name": "Finish",
            "arguments": '{"return_type": "give_answer", "final_answer": "20 degrees"}',
        },
    },
]


def test_toolbench_trajectory_in_agent_format() -> None:
    traj = {
        "trajectory_id": "tb/G1/1",
        "query_id": "tb/G1/1",
        "messages": json.dumps(TOOLBENCH_MESSAGES),
        "tool_ids": ["Weather&&now", "Mail&&send"],
        "source": "toolbench",
    }
    built = build_datasets(tools=TOOLS, codes=CODES, trajectories=[traj], config=DatasetConfig(stages=("trajectory",)))
    assert built.rejects == []
    conv = _conv(built.examples[0])
    roles_loss = [(m["role"], m["loss"]) for m in conv]
    assert roles_loss == [
        ("system", False),
        ("user", False),
        ("assistant", True),
        ("user", False),
        ("assistant", True),
        ("user", False),  # weather
        ("assistant", True),
        ("user", False),
        ("assistant", True),
        ("user", False),  # mail
        ("assistant", True),
        ("user", False),
        ("assistant", True),  # Finish
    ]
    assert conv[1]["content"] == "What's the weather? Then mail it.\nBegin!"
    assert conv[2]["content"] == "I should check the weather.\n<a_1><b_2>"
    assert conv[3]["content"].startswith("Tool documentation: Weather&&now. does things")
    assert json.loads(conv[4]["content"]) == {"city": "Paris"}
    assert conv[5]["content"] == 'Observation: {"temp": 20}'
    assert conv[6]["content"] == "<a_1><b_3>"
    assert conv[10]["content"] == FINISH_TOKEN and conv[11]["content"] == FINISH_DOC
    assert json.loads(conv[12]["content"])["final_answer"] == "20 degrees"
    assert built.examples[0]["n_tools"] == 2
    assert assistant_codes(built.examples[0]) == ["<a_1><b_2>", "<a_1><b_3>"]


def test_bfcl_multi_turn_calls_get_codes_and_a_finish_per_turn() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "now(city='Paris', days=[1, 2])"},
        {"role": "user", "content": "and mail it"},
        {"role": "assistant", "content": "send('bob')"},
    ]
    traj = {
        "trajectory_id": "bfcl/mt/0",
        "query_id": "bfcl/mt/0",
        "messages": json.dumps(messages),
        "tool_ids": ["Weather&&now", "Mail&&send"],
        "source": "bfcl",
    }
    built = build_datasets(tools=TOOLS, codes=CODES, trajectories=[traj], config=DatasetConfig(stages=("trajectory",)))
    conv = _conv(built.examples[0])
    contents = [m["content"] for m in conv if m["role"] == "assistant"]
    assert contents == [
        "<a_1><b_2>",
        '{"city": "Paris", "days": [1, 2]}',
        FINISH_TOKEN,
        '{"return_type": "give_answer"}',
        "<a_1><b_3>",
        '{"_0": "bob"}',
        FINISH_TOKEN,
        '{"return_type": "give_answer"}',
    ]


def test_unresolved_or_uncoded_trajectories_are_rejected() -> None:
    base = {"query_id": None, "messages": json.dumps(TOOLBENCH_MESSAGES), "source": "toolbench"}
    trajs = [
        {**base, "trajectory_id": "a", "tool_ids": ["Weather&&now"]},  # one call unresolved upstream
        {**base, "trajectory_id": "b", "tool_ids": ["Weather&&now", "New&&x"]},
        {**base, "trajectory_id": "c", "messages": "{not json", "tool_ids": []},
    ]
    with pytest.raises(ValueError, match="trajectory 'c': messages is not valid JSON"):
        build_datasets(tools=TOOLS, codes=CODES, trajectories=trajs, config=DatasetConfig(stages=("trajectory",)))
    built = build_datasets(
        tools=TOOLS, codes=CODES, trajectories=trajs[:2], config=DatasetConfig(stages=("trajectory",))
    )
    assert built.examples == []
    assert [(r["tool_id"], r["reason"]) for r in built.rejects] == [
        (None, "unresolved tool calls (calls in messages != resolved tool_ids)"),
        ("New&&x", "called tool without a code"),
    ]


def test_split_is_deterministic_seeded_and_respects_heldout() -> None:
    config = SplitConfig(seed=3, validation_fraction=0.25)
    ids = [f"q/{i}" for i in range(4000)]
    splits = [assign_split(q, "train", config) for q in ids]
    assert splits == [assign_split(q, "train", config) for q in ids]
    share = splits.count("validation") / len(ids)
    assert 0.22 < share < 0.28
    other_seed = [assign_split(q, "train", SplitConfig(seed=4, validation_fraction=0.25)) for q in ids]
    assert other_seed != splits
    assert assign_split("q/1", "test", config) == "test"
    assert {assign_split(q, "train", SplitConfig(validation_fraction=0.0)) for q in ids} == {"train"}


def test_jsonl_export_loads_with_hf_datasets(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    queries = [{"query_id": f"s/train/{i}", "text": f"query {i}", "source": "s", "split": "train"} for i in range(40)]
    qrels = [{"query_id": q["query_id"], "tool_id": "Weather&&now", "relevance": 1} for q in queries]
    built = build_datasets(
        tools=TOOLS,
        codes=CODES,
        queries=queries,
        qrels=qrels,
        config=DatasetConfig(split=SplitConfig(validation_fraction=0.3)),
    )
    paths = export_jsonl(built.examples, tmp_path / "export")
    assert set(paths) == {"memorization.train", "retrieval.train", "retrieval.validation"}
    loaded = datasets.load_dataset(
        "json", data_files={k: str(v) for k, v in paths.items()}, cache_dir=str(tmp_path / "hf")
    )
    total = sum(len(loaded[k]) for k in paths)
    assert total == len(built.examples)
    row = loaded["memorization.train"][0]
    assert row["conversations"][1]["role"] == "assistant" and row["conversations"][1]["loss"] is True
    originals = {e["example_id"]: json.loads(e["conversations"]) for e in built.examples}
    for split in paths:
        for r in loaded[split]:
            assert r["conversations"] == originals[r["example_id"]]


# ---- real data: ToolLens (BEIR), StableToolBench G1, ToolBench answer examples -------------


def _records(result) -> dict[str, list[dict]]:
    return {
        "tools": [asdict(x) for x in result.tools],
        "queries": [asdict(x) for x in result.queries],
        "qrels": [asdict(x) for x in result.qrels],
        "trajectories": [asdict(x) for x in result.trajectories],
    }


def _fake_codes(tool_ids: list[str]) -> list[dict]:
    """Unique 2-level codes over K=256, in tool_id order."""
    return [{"tool_id": t, "code": format_code([i // 256, i % 256])} for i, t in enumerate(sorted(tool_ids))]


def _merge(*parts: dict[str, list[dict]]) -> dict[str, list[dict]]:
    merged: dict[str, list[dict]] = {"tools": [], "queries": [], "qrels": [], "trajectories": []}
    seen_tools: set[str] = set()
    for part in parts:
        for key, kept in merged.items():
            for row in part[key]:
                # Parsers emit every doc variant; the ingest task keeps one row per tool_id.
                if key == "tools":
                    if row["tool_id"] in seen_tools:
                        continue
                    seen_tools.add(row["tool_id"])
                kept.append(row)
    return merged


def test_real_data_counts_splits_and_codes(shared_data: Path) -> None:
    from toolweaver.ingest import parse_source

    toollens = _records(parse_source("beir", shared_data / "toollens"))
    stb = _records(
        parse_source("stabletoolbench", shared_data / "toolbench/stabletoolbench/solvable_queries/test_instruction")
    )
    example = _records(parse_source("toolbench", shared_data / "toolbench/data_example"))
    data = _merge(toollens, stb, example)
    assert len(toollens["tools"]) == 464 and len(toollens["queries"]) == 16893
    # Leave 5 tools uncoded: their memorization and every query needing them become rejects.
    tool_ids = sorted(t["tool_id"] for t in data["tools"])
    uncoded = set(tool_ids[::500][:5])
    codes = _fake_codes([t for t in tool_ids if t not in uncoded])
    built = build_datasets(codes=codes, config=DatasetConfig(), **data)

    stages = Counter(e["stage"] for e in built.examples)
    assert stages["memorization"] == len(tool_ids) - len(uncoded)
    relevant: dict[str, set[str]] = {}
    for row in data["qrels"]:
        relevant.setdefault(row["query_id"], set()).add(row["tool_id"])
    query_ids = {q["query_id"] for q in data["queries"]}
    expected_retrieval = sum(1 for q in query_ids if relevant.get(q) and not relevant[q] & uncoded)
    assert stages["retrieval"] == expected_retrieval > 17000
    expected_traj = sum(
        1
        for t in data["trajectories"]
        if t["tool_ids"] and not set(t["tool_ids"]) & uncoded and len(t["tool_ids"]) == _n_calls(t["messages"])
    )
    assert stages["trajectory"] == expected_traj >= 1
    # Every input is accounted for: built or rejected with a reason.
    rejected_queries = {r["query_id"] for r in built.rejects if r["stage"] == "retrieval"}
    assert len(rejected_queries) + stages["retrieval"] == len(query_ids)
    assert len([r for r in built.rejects if r["stage"] == "trajectory"]) + expected_traj == len(data["trajectories"])

    # No query in two splits; StableToolBench test queries stay in test.
    split_of: dict[str, set[str]] = {}
    for e in built.examples:
        if e["query_id"] is not None:
            split_of.setdefault(e["query_id"], set()).add(e["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert {next(iter(split_of[q])) for q in split_of if q.startswith("stabletoolbench/")} == {"test"}
    assert {"train", "validation"} <= {e["split"] for e in built.examples if e["source"] == "beir"}

    # Every assistant code string parses back to an existing tool.
    owner = {parse_code(c["code"]): c["tool_id"] for c in codes}
    known = {t["tool_id"] for t in data["tools"]}
    n_codes = 0
    for e in built.examples:
        found = assistant_codes(e)
        assert len(found) == e["n_tools"] if e["stage"] != "trajectory" else len(found) >= e["n_tools"]
        for code in found:
            assert owner[parse_code(code)] in known
            n_codes += 1
    assert n_codes > 40000


def _n_calls(messages_json: str) -> int:
    messages = json.loads(messages_json)
    return sum(
        1
        for m in messages
        if m.get("role") == "assistant" and m.get("function_call") and m["function_call"].get("name") != "Finish"
    )


def test_datasets_stage_writes_tables_and_exports(tmp_path: Path) -> None:
    pytest.importorskip("deltalake")
    import pyarrow as pa

    from storage import Store
    from storage.schemas import SCHEMAS
    from tasks.stages.datasets import build_datasets_stage

    store = Store(tmp_path / "store")
    tools = [
        {**t, "category": "c", "doc_text": t["description"], "doc_hash": str(i), "origin": "x"}
        for i, t in enumerate(TOOLS)
    ]
    store.write("tools", pa.Table.from_pylist(tools, schema=SCHEMAS["tools"]))
    codes = [{**c, "levels": list(parse_code(c["code"])), "codes_version": "v1"} for c in CODES]
    store.write("codes", pa.Table.from_pylist(codes, schema=SCHEMAS["codes"]))
    queries = [
        {"query_id": "s/train/1", "raw_id": "1", "text": "weather", "source": "s", "split": "train", "query_group": "g"}
    ]
    store.write("queries", pa.Table.from_pylist(queries, schema=SCHEMAS["queries"]))
    qrels = [{"query_id": "s/train/1", "tool_id": "Nope&&x", "relevance": 1, "source": "s"}]
    store.write("qrels", pa.Table.from_pylist(qrels, schema=SCHEMAS["qrels"]))

    result = build_datasets_stage(store, DatasetConfig(), export_dir=tmp_path / "jsonl")
    assert result.counts == {"memorization.train": 3}
    assert result.examples.rows == 3 and result.rejects.rows == 1
    rejects = store.read("sft_rejects").to_pylist()
    assert rejects == [
        {
            "stage": "retrieval",
            "source": "s",
            "query_id": "s/train/1",
            "tool_id": "Nope&&x",
            "reason": "relevant tool without a code",
        }
    ]
    assert sorted(store.read("sft_examples").column("example_id").to_pylist()) == [
        "memorization/Mail&&send",
        "memorization/QRCheck&&check",
        "memorization/Weather&&now",
    ]
    assert set(result.exported) == {"memorization.train"}
    # Unchanged inputs: a second run writes no new version.
    again = build_datasets_stage(store, DatasetConfig())
    assert again.examples.version == result.examples.version


def test_cli_datasets_prints_counts_and_exports(tmp_path: Path) -> None:
    pytest.importorskip("deltalake")
    import pyarrow as pa
    from typer.testing import CliRunner

    from flows.cli import app
    from storage import Store
    from storage.schemas import SCHEMAS

    store = Store(tmp_path / "store")
    tools = [{**t, "category": "c", "doc_text": "d", "doc_hash": str(i), "origin": "x"} for i, t in enumerate(TOOLS)]
    store.write("tools", pa.Table.from_pylist(tools, schema=SCHEMAS["tools"]))
    codes = [{**c, "levels": list(parse_code(c["code"])), "codes_version": "v1"} for c in CODES]
    store.write("codes", pa.Table.from_pylist(codes, schema=SCHEMAS["codes"]))
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "datasets",
            "--store",
            str(store.root),
            "--export",
            str(tmp_path / "x"),
            "--format",
            "json",
            "--validation-fraction",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"stage": "memorization", "split": "train", "examples": 3}]
    assert (tmp_path / "x" / "memorization.train.jsonl").read_text().count("\n") == 3
    empty = runner.invoke(app, ["datasets", "--store", str(tmp_path / "empty")])
    assert empty.exit_code != 0 and "toolweaver ingest" in empty.output


def test_real_bfcl_multi_turn_trajectories_all_build() -> None:
    """BFCL (from the installed bfcl-eval package): every multi-turn ground-truth
    conversation becomes a trajectory example whose codes resolve to BFCL functions."""
    import importlib.util

    if importlib.util.find_spec("bfcl_eval") is None:
        pytest.skip("bfcl-eval is not installed (pip install --no-deps bfcl-eval)")
    from toolweaver.ingest import parse_source

    data = _merge(_records(parse_source("bfcl", None)))
    codes = _fake_codes([t["tool_id"] for t in data["tools"]])
    config = DatasetConfig(stages=("trajectory",), split=SplitConfig(heldout_splits=()))
    built = build_datasets(codes=codes, config=config, **data)
    assert len(built.examples) == len(data["trajectories"]) >= 800 and built.rejects == []
    owner = {parse_code(c["code"]): c["tool_id"] for c in codes}
    for example, traj in zip(
        built.examples, sorted(data["trajectories"], key=lambda t: t["trajectory_id"]), strict=False
    ):
        called = [owner[parse_code(c)] for c in assistant_codes(example)]
        assert called == list(traj["tool_ids"])  # same tools, same order
        conv = _conv(example)
        assert sum(m["content"] == FINISH_TOKEN for m in conv) == sum(
            m["role"] == "user" and not m["content"].startswith(("Tool documentation", "Observation")) for m in conv
        )
    assert {e["split"] for e in built.examples} == {"train", "validation"}
