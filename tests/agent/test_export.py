"""Export round trip: `toolweaver export` writes a folder that plain transformers loads in a
fresh process (examples/use_exported_model.py, no project code) and that returns the same
top-5 tools in the same order as `toolweaver retrieve --input` for 20 queries; export
refuses a checkpoint whose codes version the store lacks; `toolweaver agent` calls real
tools with schema-valid arguments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flows.cli import app
from storage import Store
from storage.schemas import SCHEMAS
from tests.agent.helpers import char_tokenizer, train_to_memorise
from toolweaver.agent.catalog import build_catalog
from toolweaver.agent.loop import transcript
from toolweaver.agent.schema import to_json_schema
from toolweaver.align.models import write_checkpoint_meta
from toolweaver.align.tiny import tiny_llama
from toolweaver.align.vocab import FINISH_TOKEN, code_token, parse_code
from toolweaver.ingest.records import sha256_hex

ROOT = Path(__file__).parents[2]
WORDS = ["weather", "email", "flight", "hotel", "stock", "music", "recipe", "news", "map", "translate", "timer", "note"]
TAUGHT = ("weather", "flight", "stock")  # the agent checkpoint learned one call for each
QUERIES = [f"please {a} then {b}" for a, b in zip(WORDS * 2, WORDS[3:] + WORDS[:3] + WORDS, strict=False)][:20]


def _tool_rows() -> list[dict]:
    rows = []
    for word in WORDS:
        parameters = {"type": "dict", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}}
        parameters["required"] = ["query"]
        doc = f"tool: {word}\napi: run\ndescription: {word} things"
        rows.append(
            {
                "tool_id": f"{word}&&run",
                "tool_name": word,
                "api_name": "run",
                "category": "test",
                "description": f"{word} things",
                "parameters": json.dumps(parameters),
                "doc_text": doc,
                "doc_hash": sha256_hex(doc),
                "source": "test",
                "origin": "test",
            }
        )
    return rows


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    tmp = tmp_path_factory.mktemp("export")
    store = Store(tmp / "store")
    tools = _tool_rows()
    store.write("tools", pa.Table.from_pylist(tools, schema=SCHEMAS["tools"]))
    codes = {t["tool_id"]: f"<a_{i % 3}><b_{i // 3}>" for i, t in enumerate(tools)}
    code_rows = [
        {"tool_id": t, "levels": list(parse_code(c)), "code": c, "codes_version": "v1"} for t, c in codes.items()
    ]
    codes_ref = store.write("codes", pa.Table.from_pylist(code_rows, schema=SCHEMAS["codes"]))
    catalog = {t.tool_id: t for t in build_catalog(tools, codes)}
    taught = [transcript([(f"please {w}", [(catalog[f"{w}&&run"], {"query": w})])]) for w in TAUGHT]
    tokenizer = char_tokenizer(QUERIES + [m["content"] for conversation in taught for m in conversation])
    tokenizer.add_tokens([code_token(level, i) for level in range(2) for i in range(4)] + [FINISH_TOKEN])
    model = tiny_llama(len(tokenizer), seed=7, hidden_size=64)
    train_to_memorise(model, tokenizer, taught)
    for name, meta in (("ckpt", {"codes_version": codes_ref.version}), ("stale", {"codes_version": "v9"})):
        folder = tmp / name
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        full = {**meta, "stage": "trajectory", "base_model": "tiny", "step": 1, "mode": "full"}
        write_checkpoint_meta(folder, {**full, "vocab_size": len(tokenizer)})
        store.register_checkpoint("llm", folder, meta=full)
    (tmp / "queries.jsonl").write_text(
        "".join(json.dumps({"id": f"q{i}", "query": q}) + "\n" for i, q in enumerate(QUERIES))
    )
    return store


def _checkpoint_id(store: Store, codes_version: object) -> str:
    rows = store.checkpoints(kind="llm").to_pylist()
    return next(r["checkpoint_id"] for r in rows if json.loads(r["meta"])["codes_version"] == codes_version)


def test_exported_folder_retrieves_like_toolweaver_retrieve(store: Store) -> None:
    queries = store.root.parent / "queries.jsonl"
    checkpoint = _checkpoint_id(store, 0)
    common = ["--store", str(store.root), "--checkpoint", checkpoint]
    got = CliRunner().invoke(
        app, ["retrieve", "--input", str(queries), "--top-k", "5", "--format", "json", "--device", "cpu", *common]
    )
    assert got.exit_code == 0, got.output
    expected: dict[str, list[str]] = {}
    for row in json.loads(got.stdout):
        expected.setdefault(row["id"], []).append(row["tool_id"])
    assert len(expected) == 20 and all(len(v) == 5 for v in expected.values())

    out = store.root.parent / "exported"
    done = CliRunner().invoke(app, ["export", "--out", str(out), *common])
    assert done.exit_code == 0, done.output
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    tools = json.loads((out / "tools.json").read_text())
    assert tools["meta"]["codes_version"] == 0 and len(tools["tools"]) == len(WORDS)
    assert tools["tools"]["<a_0><b_0>"]["schema"] == to_json_schema(json.loads(_tool_rows()[0]["parameters"]))

    # A fresh interpreter that imports no project code: only torch and transformers.
    script = ROOT / "examples" / "use_exported_model.py"
    guard = "import sys, runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
    guard += "assert not any(m.split('.')[0] in ('toolweaver', 'tasks', 'flows', 'storage') for m in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", guard, str(script), str(out), "--input", str(queries), "--top-k", "5"],
        capture_output=True,
        text=True,
        cwd=out,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    exported = {row["id"]: [t["tool_id"] for t in row["tools"]] for row in json.loads(proc.stdout)}
    assert exported == expected


def test_export_refuses_a_codes_version_the_store_lacks(store: Store, tmp_path: Path) -> None:
    checkpoint = _checkpoint_id(store, "v9")
    result = CliRunner().invoke(
        app, ["export", "--out", str(tmp_path / "x"), "--store", str(store.root), "--checkpoint", checkpoint]
    )
    assert result.exit_code != 0
    assert checkpoint in result.output and "'v9'" in result.output
    assert not (tmp_path / "x").exists()


def test_agent_cli_reproduces_taught_calls(store: Store) -> None:
    """The checkpoint was taught one call per TAUGHT word: through the CLI it makes that call
    (schema-valid; no executor, so the observation says so) and finishes."""
    queries = store.root.parent / "taught.jsonl"
    queries.write_text("".join(json.dumps({"id": w, "query": f"please {w}"}) + "\n" for w in TAUGHT))
    args = ["agent", "--input", str(queries), "--max-steps", "3", "--format", "json", "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--store", str(store.root), "--checkpoint", _checkpoint_id(store, 0)])
    assert result.exit_code == 0, result.output
    episodes = json.loads(result.stdout)
    assert [(e["id"], e["finished"]) for e in episodes] == [(w, True) for w in TAUGHT]
    for word, episode in zip(TAUGHT, episodes, strict=True):
        assert [(c["tool_id"], c["arguments"]) for c in episode["calls"]] == [(f"{word}&&run", {"query": word})]
        assert episode["calls"][0]["observation"] == f"No executor for {word}&&run: the call was not run."
    table_args = ["agent", "please stock", "--store", str(store.root), "--checkpoint", _checkpoint_id(store, 0)]
    table = CliRunner().invoke(app, table_args)
    assert table.exit_code == 0 and "stock&&run" in table.stdout
