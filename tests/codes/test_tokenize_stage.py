"""The tokenize stage over a store: co-usage table, full run, stable incremental codes, export."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from storage import SCHEMAS, Store
from tasks.stages.codes import TokenizeConfig, latest_code_model
from tasks.stages.cousage import build_cousage
from tasks.stages.tokenize import export_tokenizer_inputs, tokenize
from toolweaver.codes.embed import EmbedConfig

# Small enough for a 2-core CPU in seconds; K=128 leaves 16k slots for ~2.5k tools.
SMALL_RQVAE = {
    "levels": 2,
    "codebook_size": 128,
    "encoder_widths": [64],
    "latent_dim": 16,
    "warmup_epochs": 1,
    "epochs": 4,
    "batch_size": 512,
    "kmeans_iters": 5,
    "device": "cpu",
}
DIM = 64


class CountingEmbedder:
    """Hashed bag of words (deterministic, cheap) that records how many docs it embedded."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.sha1(word.encode()).hexdigest()[:8], 16)
                out[i, h % DIM] += 1.0 if (h >> 8) & 1 else -1.0
        out += 1e-3  # no all-zero rows
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    @property
    def total(self) -> int:
        return sum(self.calls)


def _tool(name: str, api: str, description: str) -> dict[str, str]:
    doc_text = f"tool: {name}\napi: {api}\ndescription: {description}\nparameters: {{}}"
    return {
        "tool_id": f"{name}&&{api}",
        "tool_name": name,
        "api_name": api,
        "category": "C",
        "description": description,
        "parameters": "{}",
        "doc_text": doc_text,
        "doc_hash": hashlib.sha256(doc_text.encode()).hexdigest(),
        "source": "test",
        "origin": "t",
    }


def _codes(store: Store) -> dict[str, tuple[str, tuple[int, ...], str]]:
    rows = store.read("codes").to_pylist()
    return {r["tool_id"]: (r["code"], tuple(r["levels"]), r["codes_version"]) for r in rows}


# ----------------------------------------------------------------------------- co-usage
def test_build_cousage_from_qrels_and_trajectories(store_dir: Path) -> None:
    store = Store(store_dir)
    qrels = [("q1", "a", 1), ("q1", "b", 1), ("q2", "a", 1), ("q2", "b", 1), ("q2", "c", 1), ("q3", "c", 0)]
    store.write(
        "qrels",
        pa.Table.from_pylist(
            [{"query_id": q, "tool_id": t, "relevance": r, "source": "s"} for q, t, r in qrels], schema=SCHEMAS["qrels"]
        ),
    )
    store.write(
        "trajectories",
        pa.Table.from_pylist(
            [{"trajectory_id": "t1", "query_id": "q9", "messages": "[]", "tool_ids": ["c", "d", "c"], "source": "s"}],
            schema=SCHEMAS["trajectories"],
        ),
    )
    ref = build_cousage(store)
    rows = {(r["src"], r["dst"]): (r["count"], r["weight"]) for r in store.read("cousage").to_pylist()}
    # groups {a,b}, {a,b,c}, {c,d} (q3 has relevance 0): C_a=2, C_b=2, C_c=2, C_d=1
    assert rows == {
        ("a", "b"): (2, pytest.approx(1.0)),
        ("a", "c"): (1, pytest.approx(0.5)),
        ("b", "c"): (1, pytest.approx(0.5)),
        ("c", "d"): (1, pytest.approx(1 / np.sqrt(2))),
    }
    assert build_cousage(store) == ref  # unchanged inputs: no new version


# ----------------------------------------------------------------------------- stage on real tools
@pytest.fixture(scope="module")
def stb_store(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Store, pa.Table]:
    """StableToolBench test-query catalog (2,479 real tools) + qrels, ingested once."""
    from tasks.stages.ingest import ingest

    store = Store(tmp_path_factory.mktemp("stb") / "store")
    ingest(store, "stabletoolbench", shared_data / "toolbench/stabletoolbench/solvable_queries/test_instruction")
    return store, store.read("tools")


def test_tokenize_then_500_new_tools_keeps_every_existing_code(
    stb_store: tuple[Store, pa.Table], tmp_path: Path
) -> None:
    source, all_tools = stb_store
    store = Store(tmp_path / "store")
    store.write("qrels", source.read("qrels"))
    rng = np.random.default_rng(0)
    new_rows = np.zeros(all_tools.num_rows, dtype=bool)
    new_rows[rng.choice(all_tools.num_rows, size=500, replace=False)] = True
    old_tools = all_tools.filter(pa.array(~new_rows))
    store.write("tools", old_tools)
    cfg = TokenizeConfig(rqvae=SMALL_RQVAE)
    embedder = CountingEmbedder()

    first = tokenize(store, cfg, embedder=embedder)
    assert first.mode == "full"
    assert first.n_embedded == embedder.total == len(set(old_tools.column("doc_hash").to_pylist()))
    codes_before = _codes(store)
    assert len(codes_before) == old_tools.num_rows
    assert len({c for c, _, _ in codes_before.values()}) == old_tools.num_rows  # all unique
    assert latest_code_model(store) == first.codes_version
    assert store.read("vocabulary").num_rows == 2 * 128
    assert store.read("rqvae_epochs").num_rows == 1 + 4 + 1  # warm-up, quantised epochs, cell-frame refit
    metrics = store.read("code_metrics").to_pylist()[0]
    assert metrics["distinct_codes"] == old_tools.num_rows and metrics["alignment_cousage"] is not None
    report = store.read("collision_report").to_pylist()[0]
    assert report["collisions_after"] == 0 and report["n_tools"] == old_tools.num_rows

    store.write("tools", all_tools)  # 500 new tools arrive
    embedder.calls.clear()
    second = tokenize(store, cfg, embedder=embedder)
    new_hashes = set(all_tools.filter(pa.array(new_rows)).column("doc_hash").to_pylist())
    assert second.mode == "incremental"
    assert second.n_embedded == embedder.total == len(new_hashes - set(old_tools.column("doc_hash").to_pylist()))
    assert second.n_embedded == 500
    assert second.n_new_codes == 500
    codes_after = _codes(store)
    assert len(codes_after) == all_tools.num_rows
    assert {t: codes_after[t] for t in codes_before} == codes_before  # 0 existing codes changed
    assert len({c for c, _, _ in codes_after.values()}) == all_tools.num_rows

    embedder.calls.clear()
    third = tokenize(store, cfg, embedder=embedder)
    assert (third.n_embedded, third.n_new_codes, embedder.total) == (0, 0, 0)
    assert _codes(store) == codes_after

    with pytest.raises(ValueError, match="--retrain"):
        tokenize(store, TokenizeConfig(rqvae={**SMALL_RQVAE, "codebook_size": 256}), embedder=embedder)


# ----------------------------------------------------------------------------- export
def test_export_round_trip(store_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.stages.embed as stage

    store = Store(store_dir)
    tools = [_tool("B", "y", "second"), _tool("A", "x", "first"), _tool("C", "z", "third")]
    store.write("tools", pa.Table.from_pylist(tools, schema=SCHEMAS["tools"]))
    store.write(
        "qrels",
        pa.Table.from_pylist(
            [{"query_id": "q", "tool_id": t, "relevance": 1, "source": "s"} for t in ("C&&z", "A&&x")],
            schema=SCHEMAS["qrels"],
        ),
    )
    embedder = CountingEmbedder()
    monkeypatch.setattr(stage, "default_embedder", lambda cfg: embedder)
    meta = export_tokenizer_inputs(store_dir, tmp_path / "out", EmbedConfig())
    out = tmp_path / "out"
    ids = (out / "tool_ids.txt").read_text().splitlines()
    assert ids == ["A&&x", "B&&y", "C&&z"]
    x = np.load(out / "embeddings.npy")
    assert x.shape == (3, DIM) and x.dtype == np.float32
    from toolweaver.codes.embed import render_doc

    by_id = {t["tool_id"]: t for t in tools}
    np.testing.assert_allclose(x, embedder([render_doc(by_id[t]) for t in ids]), atol=1e-6)
    edges = np.load(out / "edges.npz")
    assert (edges["src"].tolist(), edges["dst"].tolist(), edges["weight"].tolist()) == ([0], [2], [1.0])
    assert json.loads((out / "meta.json").read_text()) == meta and meta["tools"] == 3


# ----------------------------------------------------------------------------- CLI
def test_cli_tokenize_then_rerun_is_incremental_noop(store_dir: Path) -> None:
    """`toolweaver tokenize` end to end with the real MiniLM on 40 synthetic docs."""
    from typer.testing import CliRunner

    from flows.cli import app

    store = Store(store_dir)
    topics = ["weather", "currency", "football", "recipes", "movies"]
    tools = [
        _tool(f"{t.title()} API {i}", f"get_{t}_{i}", f"Returns {t} data, variant {i}")
        for t in topics
        for i in range(8)
    ]
    store.write("tools", pa.Table.from_pylist(tools, schema=SCHEMAS["tools"]))
    args = [
        "tokenize",
        "--store",
        str(store_dir),
        "--levels",
        "2",
        "--codebook-size",
        "16",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["mode"], summary["embedded"], summary["new_codes"]) == ("full", 40, 40)
    codes = _codes(store)
    assert len({c for c, _, _ in codes.values()}) == 40
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["mode"] == "incremental"
    assert (json.loads(second.stdout)["embedded"], json.loads(second.stdout)["new_codes"]) == (0, 0)
    assert _codes(store) == codes
    refused = runner.invoke(app, [*args, "--codebook-size", "32"])
    assert refused.exit_code == 1 and "--retrain" in refused.output
    retrained = runner.invoke(app, [*args, "--retrain", "--seed", "1"])
    assert retrained.exit_code == 0, retrained.output
    summary_retrained = json.loads(retrained.stdout)
    assert (summary_retrained["mode"], summary_retrained["embedded"], summary_retrained["new_codes"]) == ("full", 0, 40)
    assert summary_retrained["codes_version"] != summary["codes_version"]
    codes_retrained = _codes(store)
    assert len({c for c, _, _ in codes_retrained.values()}) == 40
    assert {v for _, _, v in codes_retrained.values()} == {summary_retrained["codes_version"]}
