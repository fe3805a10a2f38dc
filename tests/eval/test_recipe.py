"""The README's one-command ToolLens recipe (bench/toollens_pair.sh) at tiny scale: a tiny
Llama, one memorization epoch and 16 retrieval queries. The full size is a long CPU run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "toollens_pair.sh"


@pytest.mark.slow
def test_toollens_pair_recipe_runs_at_tiny_scale(shared_data: Path, tmp_path: Path) -> None:
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

    toollens = shared_data / "toollens"
    texts = [json.loads(line)["text"] for name in ("corpus.jsonl", "queries.jsonl")
             for line in (toollens / name).read_text(encoding="utf-8").splitlines()]
    tokenizer = tiny_tokenizer(texts, max_words=2000)
    base = tmp_path / "base"
    tiny_llama(len(tokenizer), hidden_size=32).save_pretrained(base)
    tokenizer.save_pretrained(base)
    env = {
        **os.environ, "TOOLLENS": str(toollens), "STORE": str(tmp_path / "store"), "MODEL": str(base),
        "DEVICE": "cpu", "MEM_EPOCHS": "1", "RET_QUERIES": "16", "LORA_R": "4", "METHODS": "bm25,atomic,toolweaver",
        "TOOLWEAVER": str(Path(sys.executable).with_name("toolweaver")),
    }
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "store" / "results" / "results.json").read_text())
    assert {r["method"] for r in rows} == {"bm25", "atomic", "toolweaver"}
    assert {r["n_queries"] for r in rows if r["metric"] == "ndcg@5"} == {1675}  # 10% of ToolLens train, held out
    assert (tmp_path / "store" / "results" / "report" / "eval_report.md").is_file()
    # Same budget: both LLMs trained the same number of steps per stage.
    from storage import Store

    metas = [json.loads(r["meta"]) for r in Store(tmp_path / "store").checkpoints(kind="llm").to_pylist()]
    steps = {(m["tokens"], m["stage"]): m["step"] for m in metas}
    assert steps == {("codes", "memorization"): 58, ("atomic", "memorization"): 58, ("codes", "retrieval"): 2, ("atomic", "retrieval"): 2}
    assert "[toollens_pair] evaluate:" in done.stderr and "bm25" in done.stdout
