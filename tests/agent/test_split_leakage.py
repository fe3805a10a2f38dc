"""One BFCL split, no leakage: after the real ingest and the datasets stage, every BFCL
training example (retrieval, trajectory) comes from the train half, and no held-out
question or conversation id reaches a training table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pytest

from storage import Store
from storage.schemas import SCHEMAS
from tasks.stages.datasets import build_datasets_stage
from tasks.stages.ingest import ingest
from toolweaver.align.datasets import DatasetConfig
from toolweaver.align.splits import bfcl_half

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed")


def raw(example: dict) -> str:
    """The BFCL id of an example's query (`bfcl/<group>/<raw id>`)."""
    return example["query_id"].rsplit("/", 1)[1]


def test_no_heldout_bfcl_id_reaches_a_training_table(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    ingest(store, "bfcl", None)
    tool_ids = sorted(store.read("tools", columns=["tool_id"]).column("tool_id").to_pylist())
    codes = [
        {"tool_id": t, "levels": [i // 64, i % 64], "code": f"<a_{i // 64}><b_{i % 64}>", "codes_version": "v"}
        for i, t in enumerate(tool_ids)
    ]
    store.write("codes", pa.Table.from_pylist(codes, schema=SCHEMAS["codes"]))
    build_datasets_stage(store, DatasetConfig(stages=("retrieval", "trajectory")))
    examples = store.read("sft_examples", columns=["stage", "split", "source", "query_id"]).to_pylist()
    bfcl = [e for e in examples if e["source"] == "bfcl"]
    training = [e for e in bfcl if e["split"] in ("train", "validation")]
    assert {e["stage"] for e in training} == {"retrieval", "trajectory"}
    assert all(bfcl_half(raw(e)) == "train" for e in training)
    heldout = [e for e in bfcl if bfcl_half(raw(e)) == "heldout"]
    assert heldout and {e["split"] for e in heldout} == {"test"}
    # every trajectory example names its conversation; none of them is held out
    assert not {raw(e) for e in training} & {raw(e) for e in heldout}
