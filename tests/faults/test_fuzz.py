"""Hostile input, property-based (hypothesis), for every ingest adapter.

Each example is a folder in the adapter's layout holding known-good records next to
hostile files: random JSON structures, random bytes, very deep nesting and random file
names. Properties: no exception escapes the parser; every good record lands; every
undecodable file is quarantined under its own name; every quarantine row has a reason.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolweaver.ingest import beir, bfcl, stabletoolbench, toolbench, toolgen
from toolweaver.ingest.records import ParseResult

FAST, SLOW = 25, 300

_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# Shapes close to the real ones reach deeper into the parsers than fully random JSON.
near_tool_files = st.fixed_dictionaries(
    {
        "tool_name": json_values,
        "api_list": st.lists(
            st.dictionaries(
                st.sampled_from(["name", "description", "required_parameters", "optional_parameters"]), json_values
            ),
            max_size=3,
        )
        | json_values,
    }
)
near_queries = st.lists(
    st.dictionaries(st.sampled_from(["query", "query_id", "relevant APIs", "api_list"]), json_values), max_size=3
)
file_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-. ", min_size=1, max_size=24).filter(
    lambda n: n.strip(" .") == n and n not in {"", ".", ".."}
)


@st.composite
def hostile_files(draw: st.DrawFn, values: st.SearchStrategy[Any] = json_values) -> dict[str, bytes]:
    """name -> bytes: random JSON, random bytes (never valid JSON) and deep nesting."""
    files: dict[str, bytes] = {}
    for value in draw(st.lists(values | near_tool_files | near_queries, max_size=3)):
        files[f"j-{draw(file_names)}.json"] = json.dumps(value).encode()
    for raw in draw(st.lists(st.binary(min_size=1, max_size=200), max_size=2)):
        files[f"b-{draw(file_names)}.json"] = b"\xff" + raw  # 0xff: never valid UTF-8 / JSON
    depth = draw(st.integers(1, 60_000))
    if draw(st.booleans()):
        files["deep.json"] = b"[" * depth + b"]" * depth
    return files


def _undecodable(files: dict[str, bytes]) -> list[str]:
    return [name for name, raw in files.items() if raw.startswith(b"\xff")]


def _check(result: ParseResult, good_tool_ids: set[str], bad_files: list[str], folder: str = "") -> None:
    assert good_tool_ids <= {t.tool_id for t in result.tools}, "a good record was lost"
    located = {q.locator.split("#", 1)[0] for q in result.quarantine}
    for name in bad_files:
        assert f"{folder}{name}" in located, f"{name} was neither read nor quarantined"
    assert all(q.reason and q.locator for q in result.quarantine)


def _good_tool_file() -> tuple[bytes, set[str]]:
    doc = {"tool_name": "Good", "api_list": [{"name": "Api", "description": "works", "required_parameters": []}]}
    return json.dumps(doc).encode(), {"Good&&Api"}


def fuzz_toolbench(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tools"
        (root / "Cat").mkdir(parents=True)
        good, ids = _good_tool_file()
        (root / "Cat" / "good.json").write_bytes(good)
        for name, raw in files.items():
            (root / "Cat" / name).write_bytes(raw)
        _check(toolbench.parse(root), ids, _undecodable(files), "Cat/")


def fuzz_stabletoolbench(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "test_instruction"
        root.mkdir()
        query = {
            "query": "q",
            "query_id": 1,
            "relevant APIs": [["Good", "Api"]],
            "api_list": [{"tool_name": "Good", "api_name": "Api", "api_description": "works"}],
        }
        (root / "G1_good.json").write_text(json.dumps([query]))
        for name, raw in files.items():
            (root / name).write_bytes(raw)
        result = stabletoolbench.parse(root)
        _check(result, {"Good&&Api"}, _undecodable(files))
        assert "stabletoolbench/G1_good/1" in {q.query_id for q in result.queries}


def fuzz_toolgen(files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "tg"
        root.mkdir()
        good = [{"conversations": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<<A&&b>>"}]}]
        (root / "good.json").write_text(json.dumps(good))
        for name, raw in files.items():
            (root / name).write_bytes(raw)
        result = toolgen.parse(root)
        _check(result, set(), _undecodable(files))
        assert ("toolgen/good/0", "A&&b") in {(q.query_id, q.tool_id) for q in result.qrels}


def fuzz_beir(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "beir"
        (root / "qrels").mkdir(parents=True)
        good_doc = json.dumps({"_id": "d1", "text": "a good doc"}).encode()
        (root / "corpus.jsonl").write_bytes(b"\n".join([good_doc, *lines]) + b"\n")
        (root / "queries.jsonl").write_bytes(b"\n".join([json.dumps({"_id": "q1", "text": "q"}).encode(), *lines]))
        (root / "qrels" / "train.tsv").write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t1\n" + b"\n".join(lines))
        result = beir.parse(root)
        _check(result, {"beir&&d1"}, [])
        assert ("beir/train/q1", "beir&&d1") in {(q.query_id, q.tool_id) for q in result.qrels}


def fuzz_bfcl(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        (root / "multi_turn_func_doc").mkdir(parents=True)
        (root / "possible_answer").mkdir()
        good = json.dumps({"name": "good.api", "description": "works", "parameters": {}}).encode()
        (root / "multi_turn_func_doc" / "docs.json").write_bytes(b"\n".join([good, *lines]) + b"\n")
        (root / "BFCL_v4_simple.json").write_bytes(b"\n".join(lines) + b"\n")
        (root / "possible_answer" / "BFCL_v4_simple.json").write_bytes(b"\n".join(lines) + b"\n")
        result = bfcl.parse(root)
        _check(result, set(), [])
        # A BFCL tool is one function document: `name~<doc digest>` (issue 13's tool identity).
        assert "good&&api" in {t.tool_id.split(bfcl.DIGEST_SEP, 1)[0] for t in result.tools}, "a good record was lost"


json_lines = st.lists(
    st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=80).map(lambda b: b.replace(b"\n", b""))
    ),
    max_size=6,
)
CASES: dict[str, tuple[Callable[[Any], None], st.SearchStrategy[Any]]] = {
    "toolbench": (fuzz_toolbench, hostile_files()),
    "stabletoolbench": (fuzz_stabletoolbench, hostile_files()),
    "toolgen": (fuzz_toolgen, hostile_files()),
    "beir": (fuzz_beir, json_lines),
    "bfcl": (fuzz_bfcl, json_lines),
}


def run_fuzz(adapter: str, examples: int) -> None:
    check, strategy = CASES[adapter]

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
    @given(strategy)
    def property_holds(value: Any) -> None:
        check(value)

    property_holds()


@pytest.mark.parametrize("adapter", sorted(CASES))
def test_hostile_input_never_escapes_and_good_records_land(adapter: str) -> None:
    run_fuzz(adapter, FAST)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", sorted(CASES))
def test_hostile_input_fuzz_long(adapter: str) -> None:
    run_fuzz(adapter, SLOW)
