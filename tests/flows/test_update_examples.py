"""The update set of a rebuild: which model it continues, which examples it trains on."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from storage import SCHEMAS, Store
from tasks.stages.datasets import SFT_EXAMPLES, SFT_EXAMPLES_SCHEMA
from tasks.stages.finetune import TRAIN_METRICS, TRAIN_METRICS_SCHEMA
from tasks.stages.update import SFT_UPDATE, UpdateConfig, new_tool_codes, previous_model, write_update_examples
from toolweaver.align.models import CHECKPOINT_META


def _codes(store: Store, n: int, version: str = "rqvae-1", mode: str = "overwrite") -> None:
    rows = [
        {"tool_id": f"t{i}", "levels": [i // 4, i % 4], "code": f"<a_{i // 4}><b_{i % 4}>", "codes_version": version}
        for i in range(n)
    ]
    store.write("codes", pa.Table.from_pylist(rows, schema=SCHEMAS["codes"]), mode=mode)


def _examples(store: Store, n: int) -> None:
    def conv(i: int, stage: str) -> str:
        return json.dumps(
            [
                {"role": "user", "content": f"doc {i}", "loss": False},
                {"role": "assistant", "content": f"<a_{i // 4}> <b_{i % 4}>", "loss": True},
            ]
        )

    rows = [
        {
            "example_id": f"{stage}/t{i}",
            "stage": stage,
            "split": "train",
            "source": "s",
            "query_id": None,
            "conversations": conv(i, stage),
            "n_tools": 1,
        }
        for i in range(n)
        for stage in ("memorization", "retrieval")
    ]
    store.write(SFT_EXAMPLES, pa.Table.from_pylist(rows, schema=SFT_EXAMPLES_SCHEMA))


def _model(store: Store, tmp: Path, *, base: str = "tiny", final: bool = True, version: str = "rqvae-1") -> str:
    """A registered final llm checkpoint whose training metrics read the current codes."""
    folder = tmp / f"model-{base}-{final}"
    folder.mkdir()
    meta = {
        "stage": "memorization",
        "final": final,
        "base_model": base,
        "codes_version": version,
        "step": 3,
        "mode": "lora",
    }
    (folder / CHECKPOINT_META).write_text(json.dumps(meta))
    metrics = [
        {
            "run_id": "r",
            "config_hash": f"h-{base}-{final}",
            "stage": "memorization",
            "step": 3,
            "epoch": 0,
            "loss": 1.0,
            "lr": 1e-3,
            "grad_norm": 1.0,
            "tokens": 1,
            "loss_tokens": 1,
            "step_s": 0.1,
            "tokens_per_s": 10.0,
        }
    ]
    store.write(
        TRAIN_METRICS,
        pa.Table.from_pylist(metrics, schema=TRAIN_METRICS_SCHEMA),
        mode="append",
        config_hash=f"h-{base}-{final}",
        inputs=[store.latest(SFT_EXAMPLES), store.latest("codes")],
    )
    return store.register_checkpoint("llm", folder, config_hash=f"h-{base}-{final}", meta=meta)


def test_previous_model_knows_the_tools_of_the_codes_it_was_trained_on(store_dir: Path, tmp_path: Path) -> None:
    store = Store(store_dir)
    _codes(store, 8)
    _examples(store, 8)
    model = _model(store, tmp_path)
    _model(store, tmp_path, final=False)  # an unfinished run is not a model to continue
    _codes(store, 12)  # 4 tools added (same tokenizer)
    found = previous_model(store, "memorization", "tiny")
    assert found is not None and found.checkpoint_id == model
    assert found.known_tools == {f"t{i}" for i in range(8)}
    assert set(new_tool_codes(store, found.known_tools)) == {"t8", "t9", "t10", "t11"}
    assert previous_model(store, "memorization", "another-base") is None
    assert previous_model(store, "retrieval", "tiny") is None
    _codes(store, 12, version="rqvae-2")  # retrained codes: the old model does not fit
    assert previous_model(store, "memorization", "tiny") is None


@pytest.mark.parametrize("ratio, replayed", [(1.0, 4), (0.5, 2), (0.0, 0)])
def test_update_set_is_new_examples_plus_seeded_replay(store_dir: Path, ratio: float, replayed: int) -> None:
    store = Store(store_dir)
    _codes(store, 12)
    _examples(store, 12)
    new = {f"t{i}": f"<a_{i // 4}><b_{i % 4}>" for i in (8, 9, 10, 11)}
    ref, counts = write_update_examples(store, new, UpdateConfig(replay_ratio=ratio, seed=1))
    assert counts == {
        "memorization.new": 4,
        "memorization.replay": replayed,
        "retrieval.new": 4,
        "retrieval.replay": replayed,
    }
    rows = store.read(SFT_UPDATE, version=ref.version).to_pylist()
    ids = {r["example_id"] for r in rows}
    assert {f"{s}/t{i}" for s in ("memorization", "retrieval") for i in (8, 9, 10, 11)} <= ids
    assert len(rows) == 8 + 2 * replayed
    again, _ = write_update_examples(store, new, UpdateConfig(replay_ratio=ratio, seed=1))
    assert again.version == ref.version  # same seed, same set: no new version
