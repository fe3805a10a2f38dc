"""The call-accuracy stage: held-out sampling, the catalog of documents (the ingest's tool
identity), and `toolweaver evaluate --task calls` end to end with a tiny backbone."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from flows.cli import app
from storage import Store
from tasks.stages.calls import CallsConfig, catalog_documents, heldout_sample
from tests.agent.helpers import char_tokenizer
from toolweaver.align.splits import bfcl_half
from toolweaver.align.tiny import tiny_llama
from toolweaver.eval.calls import CATEGORIES, SINGLE_TURN, load_category
from toolweaver.ingest.bfcl import default_data_dir

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed")


def test_heldout_sample_is_seeded_and_never_trains() -> None:
    questions = load_category(default_data_dir(), "simple_python")
    sample = heldout_sample(questions, 50, CallsConfig())
    assert len(sample) == 50 and all(bfcl_half(q["id"]) == "heldout" for q in sample)
    assert [q["id"] for q in sample] == [q["id"] for q in heldout_sample(questions, 50, CallsConfig())]
    other = heldout_sample(questions, 50, CallsConfig(sample_seed=1))
    assert {q["id"] for q in other} != {q["id"] for q in sample}
    everything = heldout_sample(questions, None, CallsConfig())
    assert 150 < len(everything) < 250  # about half of 400


def test_catalog_is_the_distinct_documents_with_the_ingest_identity() -> None:
    from toolweaver.ingest import bfcl

    catalog = catalog_documents(default_data_dir(), CATEGORIES)
    single = catalog_documents(default_data_dir(), SINGLE_TURN)
    names = {d["name"] for d in single.values()}
    assert len(names) == 1274 and len(single) == 2350  # 426 names carry more than one document
    assert set(catalog) <= {t.tool_id for t in bfcl.parse().tools}


@pytest.mark.parametrize(
    "categories", [("simple_python",), pytest.param(("simple_python", "multi_turn_base"), marks=pytest.mark.slow)]
)
def test_evaluate_calls_cli_writes_rows(tmp_path: Path, categories: tuple[str, ...]) -> None:
    """base (given functions) and bm25 (catalog) with an untrained tiny backbone on one
    held-out item per category: 2 methods x categories x 4 metrics rows; the grammar
    makes every argument schema-valid, and a single given function is always the one
    selected. (A multi-turn conversation costs a minute here: slow tier.)"""
    torch.set_num_threads(1)
    backbone = tmp_path / "backbone"
    tokenizer = char_tokenizer(["the a of"])
    tiny_llama(len(tokenizer), seed=3).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    store = tmp_path / "store"
    args = ["evaluate", "--task", "calls", "--methods", "base,bm25", "--store", str(store), "--format", "json"]
    args += [arg for c in categories for arg in ("--category", c)]
    args += ["--per-category", "1", "--conversations", "1", "--base-model", str(backbone), "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    keys = {(r["method"], r["setting"], r["dataset"], r["metric"]) for r in rows}
    assert len(rows) == len(keys) == 2 * len(categories) * 4
    value = {(r["method"], r["dataset"], r["metric"]): r["value"] for r in rows}
    assert value[("base", "bfcl/simple_python", "tool_selection_acc")] == 1.0
    valid = [v for (_, _, metric), v in value.items() if metric == "schema_valid_rate" and not math.isnan(v)]
    assert valid and set(valid) == {1.0}  # nan: no call was made (an untrained model may run out of budget)
    written = Store(store).read("eval_results").to_pylist()
    assert len(written) == len(rows) and {r["split"] for r in written} == {"heldout"}
    bad = CliRunner().invoke(app, [*args[:4], "dense", *args[5:]])
    assert bad.exit_code != 0 and "unknown method 'dense'" in bad.output
