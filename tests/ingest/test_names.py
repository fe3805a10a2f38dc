"""ToolBench's standardised function names and the name checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolweaver.ingest.names import change_name, function_name, name_problem, standardize, tool_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Weather API", "weather_api"),
        ("Get  Order!!", "get_order"),
        ("__Leading and trailing__", "leading_and_trailing"),
        ("123 numbers first", "get_123_numbers_first"),
        ("/v1/nutrition", "v1_nutrition"),
        ("天气 API", "天气_api"),  # ToolBench keeps CJK characters
        ("a^b", "a^b"),  # ToolBench's character class keeps a literal caret
        ("Ünïcode Näme", "n_code_n_me"),
        ("", ""),
    ],
)
def test_standardize_known_answers(raw: str, expected: str) -> None:
    assert standardize(raw) == expected


def test_change_name_prefixes_reserved_words_only() -> None:
    assert change_name("id") == "is_id"
    assert change_name("from") == "is_from"
    assert change_name("identity") == "identity"


def test_function_name_known_answers() -> None:
    assert function_name("SQUAKE", "Checkhealth") == "checkhealth_for_squake"
    assert function_name("transitaires", "Transitaire") == "transitaire_for_transitaires"
    assert function_name("My Tool", "id") == "is_id_for_my_tool"


def test_function_name_keeps_the_last_64_characters() -> None:
    name = function_name("Tool Name", "a" * 100)
    assert len(name) == 64
    assert name == ("a" * 100 + "_for_tool_name")[-64:]
    assert name.endswith("_for_tool_name")


def test_function_names_match_real_answer_files(shared_data: Path) -> None:
    """Parity with ToolBench: the StableToolBench answer examples list the functions of their
    query's api_list under the standardised names; recompute them from the raw names."""
    base = shared_data / "toolbench" / "stabletoolbench"
    queries = {
        str(q["query_id"]): q
        for q in json.loads((base / "solvable_queries" / "test_instruction" / "G1_instruction.json").read_text())
    }
    answers = sorted(base.glob("answer_examples/*/G1_instruction/*.json"))
    assert len(answers) == 6
    for answer in answers:
        functions = {f["name"] for f in json.loads(answer.read_text())["answer_generation"]["function"]} - {"Finish"}
        query = queries[answer.stem.split("_")[0]]
        assert functions == {function_name(a["tool_name"], a["api_name"]) for a in query["api_list"]}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (None, "missing_name"),
        ("   ", "missing_name"),
        (17, "wrong_type"),
        ("bad\x00name", "nul_in_name"),
        ("bell\x07", "control_char_in_name"),
        ("../../etc/x", "path_traversal_name"),
        ("a\\..\\b", "path_traversal_name"),
        ("tool&&api", "separator_in_name"),
        ("x" * 5000, "name_too_long"),
    ],
)
def test_name_problems(name: object, reason: str) -> None:
    assert name_problem(name) == reason


@pytest.mark.parametrize("name", ["/v1/nutrition", "Driver's  License", " padded ", "a..b", "1.0/..x"])
def test_real_looking_names_pass(name: str) -> None:
    assert name_problem(name) is None


def test_tool_id_keeps_raw_names() -> None:
    assert tool_id(" Padded Tool ", "Get  X") == " Padded Tool &&Get  X"
