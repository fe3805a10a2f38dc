"""The README's one-command recipes at tiny scale (a tiny Llama, one memorization epoch, 16
retrieval queries): the ToolLens pair (bench/toollens_pair.sh) and its ablations
(bench/toollens_ablations.sh), and StableToolBench zero-shot (bench/stabletoolbench_zeroshot.sh).
The full sizes are long CPU runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _tiny_model(texts: list[str], folder: Path) -> Path:
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

    tokenizer = tiny_tokenizer(texts, max_words=2000)
    tiny_llama(len(tokenizer), hidden_size=32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", str(BENCH / script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _llm_metas(store: Path) -> list[dict]:
    from storage import Store

    return [
        json.loads(r["meta"]) | {"id": r["checkpoint_id"]} for r in Store(store).checkpoints(kind="llm").to_pylist()
    ]


@pytest.mark.slow
def test_toollens_pair_and_ablation_recipes_run_at_tiny_scale(shared_data: Path, tmp_path: Path) -> None:
    toollens = shared_data / "toollens"
    texts = [
        json.loads(line)["text"]
        for name in ("corpus.jsonl", "queries.jsonl")
        for line in (toollens / name).read_text(encoding="utf-8").splitlines()
    ]
    base = _tiny_model(texts, tmp_path / "base")
    env = {
        "TOOLLENS": str(toollens),
        "STORE": str(tmp_path / "store"),
        "MODEL": str(base),
        "DEVICE": "cpu",
        "MEM_EPOCHS": "1",
        "RET_QUERIES": "16",
        "LORA_R": "4",
        "METHODS": "bm25,atomic,toolweaver",
        "TOOLWEAVER": str(Path(sys.executable).with_name("toolweaver")),
    }
    done = _run("toollens_pair.sh", env)
    rows = json.loads((tmp_path / "store" / "results" / "results.json").read_text())
    assert {r["method"] for r in rows} == {"bm25", "atomic", "toolweaver"}
    assert {r["n_queries"] for r in rows if r["metric"] == "ndcg@5"} == {1675}  # 10% of ToolLens train, held out
    assert (tmp_path / "store" / "results" / "report" / "eval_report.md").is_file()
    # Same budget: both LLMs trained the same number of steps per stage.
    metas = _llm_metas(tmp_path / "store")
    steps = {(m["tokens"], m["stage"]): m["step"] for m in metas}
    assert steps == {
        ("codes", "memorization"): 58,
        ("atomic", "memorization"): 58,
        ("codes", "retrieval"): 2,
        ("atomic", "retrieval"): 2,
    }
    assert "[toollens_pair] evaluate:" in done.stderr and "bm25" in done.stdout

    pair = {m["tokens"]: m["id"] for m in metas if m["stage"] == "retrieval"}
    done = _run("toollens_ablations.sh", env | {"TOOLWEAVER_CKPT": pair["codes"]})
    rows = json.loads((tmp_path / "store" / "results" / "ablations.json").read_text())
    assert {r["method"] for r in rows} == {"toolweaver", "toolweaver-l0", "toolweaver-init-random"}
    # The pair's toolweaver is decoded with its own (older) codes after the lambda = 0 retokenisation,
    # so its metrics are those of the pair's evaluation.
    pair_rows = {
        (r["metric"], r["convention"]): r["value"]
        for r in json.loads((tmp_path / "store" / "results" / "results.json").read_text())
        if r["method"] == "toolweaver"
    }
    assert {(r["metric"], r["convention"]): r["value"] for r in rows if r["method"] == "toolweaver"} == pair_rows
    ablation = [m for m in _llm_metas(tmp_path / "store") if m["id"] not in {m2["id"] for m2 in metas}]
    by = {(m["vocab_init"], m["stage"]): m for m in ablation}
    assert len(ablation) == 4 and {m["step"] for m in ablation if m["stage"] == "memorization"} == {58}
    assert {m["step"] for m in ablation if m["stage"] == "retrieval"} == {2}  # the pair's budget
    pair_codes = {m["codes_version"] for m in metas}
    assert by[("random", "memorization")]["codes_version"] in pair_codes  # trained before retokenising
    assert by[("codebook", "memorization")]["codes_version"] not in pair_codes  # lambda = 0 codes
    assert "[toollens_ablations] evaluate:" in done.stderr

    # bench/memorization.py: every checkpoint decoded with its own codes (init-random's are the
    # pre-retokenisation ones) against the tools named by the current examples.
    memorized = [m["id"] for m in metas + ablation if m["stage"] == "memorization"]
    out = tmp_path / "mem.json"
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "memorization.py"),
            "--store",
            str(tmp_path / "store"),
            *memorized,
            "--limit",
            "20",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    mem = json.loads(out.read_text())
    assert [r["checkpoint"] for r in mem] == memorized and {r["tools"] for r in mem} == {20}
    assert sorted(r["tokens"] for r in mem) == ["atomic", "codes", "codes", "codes"]
    assert all(0 <= r["hits"] <= 20 and r["exact_match"] == r["hits"] / 20 for r in mem)


@pytest.mark.slow
def test_stabletoolbench_zeroshot_recipe_runs_at_tiny_scale(shared_data: Path, tmp_path: Path) -> None:
    base = _tiny_model(["get weather forecast for a city", "search recipes by ingredient"], tmp_path / "base")
    env = {
        "STB": str(shared_data / "toolbench" / "stabletoolbench"),
        "STORE": str(tmp_path / "store"),
        "MODEL": str(base),
        "DEVICE": "cpu",
        "MEM_EPOCHS": "1",
        "LORA_R": "4",
        "BATCH": "64",
        "METHODS": "bm25,atomic,toolweaver",
        "DATASET": "stabletoolbench/G3_instruction",
        "TOOLWEAVER": str(Path(sys.executable).with_name("toolweaver")),
    }
    done = _run("stabletoolbench_zeroshot.sh", env)
    rows = json.loads((tmp_path / "store" / "results" / "results.json").read_text())
    assert {r["method"] for r in rows} == {"bm25", "atomic", "toolweaver"}
    assert {r["n_queries"] for r in rows if r["metric"] == "ndcg@5"} == {61}  # every G3_instruction test query
    # Zero-shot: memorization only, the same number of steps for both vocabularies.
    steps = {(m["tokens"], m["stage"]): m["step"] for m in _llm_metas(tmp_path / "store")}
    assert steps == {("codes", "memorization"): 39, ("atomic", "memorization"): 39}  # ceil(2,479 / 64)
    assert "[stabletoolbench_zeroshot] evaluate:" in done.stderr
