"""Pure parsers on small synthetic corpora in the real layouts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.ingest.corpus import add_to_tar, api, good_toolbench, tar_gz, tool_file, write_json
from toolweaver.ingest import beir, bfcl, stabletoolbench, toolbench, toolgen
from toolweaver.ingest.docs import doc_text
from toolweaver.ingest.records import canonical_json, sha256_hex


def test_toolbench_folder_tools_queries_qrels_and_trajectory(tmp_path: Path) -> None:
    result = toolbench.parse(good_toolbench(tmp_path / "tb"))
    ids = Counter(t.tool_id for t in result.tools)
    # 5 API entries in tool files + 1 in the instruction's api_list.
    assert result.stats["tool_files"] == 3 and result.stats["api_entries"] == 5
    assert ids == {"Stocks&&Quote": 3, "Stocks&&History": 1, "Weather API&&Forecast": 1}
    quote = next(t for t in result.tools if t.origin == "data/toolenv/tools/Finance/stocks.json#api_list[0]")
    assert quote.category == "Finance"  # the parent folder
    assert quote.doc_hash == sha256_hex(quote.doc_text)
    assert quote.doc_text == doc_text(
        "Stocks", "Quote", "Latest quote", canonical_json({"required": [], "optional": []})
    )
    assert [q.query_id for q in result.queries] == ["toolbench/G1/7", "toolbench/G1/7"]  # instruction + answer
    assert {(q.query_id, q.tool_id) for q in result.qrels} == {
        ("toolbench/G1/7", "Stocks&&Quote"),
        ("toolbench/G1/7", "Weather API&&Forecast"),
    }
    (trajectory,) = result.trajectories
    assert trajectory.trajectory_id == "toolbench/G1/7_ChatGPT_DFS_woFilter_w2"
    assert trajectory.query_id == "toolbench/G1/7"
    # The longest train_messages path; Finish is not a tool; the unknown call is not guessed.
    assert trajectory.tool_ids == ("Stocks&&Quote", "Weather API&&Forecast")
    assert len(json.loads(trajectory.messages)) == 6
    (bad,) = result.quarantine
    assert bad.reason == "unresolved_call" and "nosuch_for_nowhere" in bad.excerpt
    assert bad.locator == "data/answer/G1_answer/7_ChatGPT_DFS_woFilter_w2.json#train_messages[1][4]"


def test_toolbench_archive_equals_folder(tmp_path: Path) -> None:
    folder = good_toolbench(tmp_path / "tb")
    archive = tar_gz(folder, tmp_path / "tb.tar.gz")
    from_dir, from_tar = toolbench.parse(folder), toolbench.parse(archive)
    assert from_tar.tools == from_dir.tools
    assert from_tar.queries == from_dir.queries
    assert from_tar.trajectories == from_dir.trajectories
    assert from_tar.files == from_dir.files


def test_toolbench_resolves_calls_against_the_passed_catalog(tmp_path: Path) -> None:
    root = good_toolbench(tmp_path / "tb")
    result = toolbench.parse(root, catalog=[("Nowhere", "NoSuch")])
    assert result.trajectories[0].tool_ids == ("Stocks&&Quote", "Weather API&&Forecast", "Nowhere&&NoSuch")
    assert result.quarantine == []


def test_toolbench_ambiguous_call_is_quarantined(tmp_path: Path) -> None:
    root = good_toolbench(tmp_path / "tb")
    # "Weather-API" standardises like "Weather API": the call can no longer be resolved.
    result = toolbench.parse(root, catalog=[("Weather-API", "Forecast")])
    assert result.trajectories[0].tool_ids == ("Stocks&&Quote",)
    assert sorted(q.reason for q in result.quarantine) == ["ambiguous_call", "unresolved_call"]


def test_toolbench_archive_member_names_are_only_labels(tmp_path: Path) -> None:
    doc = json.dumps(tool_file("Evil", [api("Run")])).encode()
    archive = add_to_tar(
        tmp_path / "evil.tar.gz", {"../../etc/x.json": doc, "tools/Cat/api.py": b"raise SystemExit(1)"}
    )
    result = toolbench.parse(archive)
    assert [t.tool_id for t in result.tools] == ["Evil&&Run"]
    assert result.tools[0].category == "etc"
    assert not (tmp_path.parent / "etc").exists() and not (tmp_path / "etc").exists()


def test_stabletoolbench_groups_and_split(tmp_path: Path) -> None:
    folder = tmp_path / "stb" / "solvable_queries" / "test_instruction"
    item = {
        "query": "q",
        "query_id": 3,
        "relevant APIs": [["T", "A"]],
        "api_list": [
            {
                "category_name": "C",
                "tool_name": "T",
                "api_name": "A",
                "api_description": "d",
                "required_parameters": [],
                "optional_parameters": [],
            }
        ],
    }
    write_json(folder / "G1_tool.json", [item])
    write_json(folder / "G2_category.json", [item])
    result = stabletoolbench.parse(tmp_path / "stb")
    assert sorted((q.query_id, q.query_group, q.split) for q in result.queries) == [
        ("stabletoolbench/G1_tool/3", "G1_tool", "test"),
        ("stabletoolbench/G2_category/3", "G2_category", "test"),
    ]
    assert {q.tool_id for q in result.qrels} == {"T&&A"}
    assert stabletoolbench.parse(folder).queries == result.queries  # the folder itself works too


def _beir(root: Path) -> Path:
    corpus = [
        {
            "_id": "0",
            "title": "",
            "text": "category_name:Food, tool_name:Recipes, Inc, api_name:Suggest, "
            'api_description:Get, suggestions, required_params: [{"name": "q"}], '
            "optional_params: [], return_schema: {}",
        },
        {"_id": "1", "title": "Plain", "text": "a doc without the ToolLens shape"},
    ]
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(c) for c in corpus) + "\n")
    queries = [{"_id": "q1", "text": "find recipes"}, {"_id": "q2", "text": "plain"}, {"_id": "q3", "text": "nothing"}]
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\t0\t1\nq1\t0\t1\nq1\t1\t1\nq2\t1\t2\nq2\t9\t1\n"
    )
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\t1\t1\n")
    return root


def test_beir_parses_toollens_text_and_splits(tmp_path: Path) -> None:
    result = beir.parse(_beir(tmp_path / "toylens"))
    by_id = {t.tool_id: t for t in result.tools}
    assert set(by_id) == {"Recipes, Inc&&Suggest", "Plain&&1"}
    parsed = by_id["Recipes, Inc&&Suggest"]
    assert (parsed.category, parsed.description) == ("Food", "Get, suggestions")
    assert json.loads(parsed.parameters) == {"required": [{"name": "q"}], "optional": []}
    assert sorted((q.query_id, q.split) for q in result.queries) == [
        ("beir/test/q1", "test"),
        ("beir/train/q1", "train"),
        ("beir/train/q2", "train"),
        ("beir/unlabelled/q3", "unlabelled"),
    ]
    assert sorted((q.query_id, q.tool_id, q.relevance) for q in result.qrels) == [
        ("beir/test/q1", "Plain&&1", 1),
        ("beir/train/q1", "Plain&&1", 1),
        ("beir/train/q1", "Recipes, Inc&&Suggest", 1),
        ("beir/train/q2", "Plain&&1", 2),
    ]
    assert result.stats == {"qrels_rows_read": 6, "qrels_duplicate_rows": 1}
    assert [(q.locator, q.reason) for q in result.quarantine] == [("qrels/train.tsv#L6", "unknown_corpus_id")]


def _bfcl(root: Path) -> Path:
    doc = {"name": "math.stats.mean", "description": "Mean", "parameters": {"type": "dict", "properties": {}}}
    lines = {
        "BFCL_v4_simple_python.json": [
            {
                "id": "simple_python_0",
                "question": [[{"role": "user", "content": "mean?"}]],
                "function": [doc, {"name": "plain", "description": "p"}],
            }
        ],
        "BFCL_v4_multi_turn_base.json": [
            {
                "id": "multi_turn_base_0",
                "involved_classes": ["GorillaFileSystem"],
                "question": [[{"role": "user", "content": "go"}], [{"role": "user", "content": "list"}]],
            }
        ],
        "possible_answer/BFCL_v4_simple_python.json": [
            {"id": "simple_python_0", "ground_truth": [{"math.stats.mean": {"x": [1]}}]}
        ],
        "possible_answer/BFCL_v4_multi_turn_base.json": [
            {"id": "multi_turn_base_0", "ground_truth": [["cd(folder='a')", "ls()"], ["cd('..')"]]}
        ],
        "multi_turn_func_doc/gorilla_file_system.json": [
            {"name": "cd", "description": "change dir", "parameters": {"type": "dict", "properties": {"folder": {}}}},
            {"name": "ls", "description": "list"},
        ],
    }
    for rel, items in lines.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("\n".join(json.dumps(i) for i in items) + "\n")
    return root


def test_bfcl_names_queries_qrels_trajectories(tmp_path: Path) -> None:
    result = bfcl.parse(_bfcl(tmp_path / "data"))
    assert {(t.tool_name, t.api_name, t.category) for t in result.tools} == {
        ("math.stats", "mean", "simple_python"),
        ("bfcl", "plain", "simple_python"),
        ("bfcl", "cd", "gorilla_file_system"),
        ("bfcl", "ls", "gorilla_file_system"),
    }
    tool_id = {t.api_name: t.tool_id for t in result.tools}
    assert all(t.tool_id == f"{t.tool_name}&&{t.api_name}~{t.doc_hash[:10]}" for t in result.tools)
    assert sorted(q.query_id for q in result.queries) == [
        "bfcl/multi_turn_base/multi_turn_base_0",
        "bfcl/simple_python/simple_python_0",
    ]
    assert sorted((q.query_id.split("/")[1], q.tool_id) for q in result.qrels) == [
        ("multi_turn_base", tool_id["cd"]),
        ("multi_turn_base", tool_id["ls"]),
        ("simple_python", tool_id["mean"]),
    ]
    (trajectory,) = result.trajectories
    assert trajectory.tool_ids == (tool_id["cd"], tool_id["ls"], tool_id["cd"])
    calls = [m["function_call"] for m in json.loads(trajectory.messages) if m["role"] == "assistant"]
    # the positional `cd('..')` is named by the document's parameter order
    assert [json.loads(c["arguments"]) for c in calls] == [{"folder": "a"}, {}, {"folder": ".."}]
    assert [m["role"] for m in json.loads(trajectory.messages)] == [
        "user",
        "assistant",
        "assistant",
        "user",
        "assistant",
    ]


def test_bfcl_package_is_found_without_importing_it() -> None:
    """In a fresh interpreter: other tests (the scorers, the executors) import bfcl_eval."""
    import subprocess
    import sys

    assert (bfcl.default_data_dir() / "possible_answer").is_dir()
    probe = (
        "import sys; from toolweaver.ingest import bfcl; bfcl.parse; bfcl.default_data_dir(); "
        "assert 'bfcl_eval' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=Path(__file__).parents[2])


def test_toolgen_sharegpt(tmp_path: Path) -> None:
    examples = [
        {
            "conversations": [
                {"role": "system", "content": "s", "loss": False},
                {"role": "user", "content": "weather in Paris", "loss": False},
                {"role": "assistant", "content": "<<Weather API&&Forecast>> then <<Finish>>", "loss": True},
            ]
        },
        {
            "conversations": [
                {"role": "user", "content": "hi", "loss": False},
                {"role": "assistant", "content": "hello", "loss": True},
            ]
        },
    ]
    write_json(tmp_path / "tg" / "toolgen_atomic_retrieval_G1.json", examples)
    (tmp_path / "tg" / "more.jsonl").write_text(json.dumps(examples[0]) + "\n")
    result = toolgen.parse(tmp_path / "tg")
    assert sorted(q.query_id for q in result.queries) == ["toolgen/more/1", "toolgen/toolgen_atomic_retrieval_G1/0"]
    assert {q.tool_id for q in result.qrels} == {"Weather API&&Forecast"}
    assert result.stats == {"examples_read": 3, "examples_without_tool_tokens": 1}


def test_missing_path_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        toolbench.parse(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        beir.parse(tmp_path)


def test_bfcl_tool_is_a_document_not_a_name(tmp_path: Path) -> None:
    """Two questions give different documents under one name: two tools, and each
    question's qrel points at the document that question was given."""
    root = _bfcl(tmp_path / "data")
    other = {"name": "math.stats.mean", "description": "Arithmetic mean", "parameters": {"type": "dict"}}
    question = {"id": "simple_python_1", "question": [[{"role": "user", "content": "avg?"}]], "function": [other]}
    answer = {"id": "simple_python_1", "ground_truth": [{"math.stats.mean": {}}]}
    for rel, item in (("BFCL_v4_simple_python.json", question), ("possible_answer/BFCL_v4_simple_python.json", answer)):
        with (root / rel).open("a") as handle:
            handle.write(json.dumps(item) + "\n")
    result = bfcl.parse(root)
    means = {t.description: t.tool_id for t in result.tools if t.api_name == "mean"}
    assert len(means) == 2 and len(set(means.values())) == 2
    qrels = {q.query_id.rsplit("/", 1)[1]: q.tool_id for q in result.qrels if "simple" in q.query_id}
    assert qrels == {"simple_python_0": means["Mean"], "simple_python_1": means["Arithmetic mean"]}


def test_bfcl_split_is_the_one_bfcl_half_by_raw_id(tmp_path: Path) -> None:
    from toolweaver.align.splits import bfcl_half

    result = bfcl.parse(_bfcl(tmp_path / "data"))
    assert {q.raw_id: q.split for q in result.queries} == {
        q.raw_id: ("train" if bfcl_half(q.raw_id) == "train" else "test") for q in result.queries
    }
