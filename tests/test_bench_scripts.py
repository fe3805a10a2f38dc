"""Every benchmark script starts as `python bench/<name>.py` (sys.path[0] = bench/).

bench/tokenize.py is named like the stdlib module that `logging` imports, so a script
that does not drop bench/ from sys.path first dies on import; `--help` catches that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py")))
def test_bench_script_starts(script: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def _load_bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("tools", [0, 150])
def test_rebuild_sample_splits_files_into_disjoint_base_and_new(tmp_path: Path, tools: int) -> None:
    """--tools 0 must take every file not picked as new (it once failed on file granularity:
    the new files overshoot their API target, so a fixed base target was unreachable)."""
    import json

    rebuild = _load_bench("rebuild")
    for i in range(60):  # 7 APIs per file, 420 in all: the new files overshoot their target of 20
        api_list = [{"name": f"api{j}"} for j in range(7)]
        (tmp_path / f"tool{i:02d}.json").write_text(json.dumps({"tool_name": f"t{i}", "api_list": api_list}))
    base, new = rebuild.sample_files(tmp_path, tools, 0.05, seed=0)
    assert not set(base) & set(new)
    assert 7 * len(new) >= round((tools or 420 / 1.05) * 0.05)
    if tools:
        assert tools <= 7 * len(base) < tools + 7
    else:
        assert len(base) + len(new) == 60


def test_memorization_bench_scores_a_memorized_checkpoint_one(tmp_path: Path) -> None:
    """Known answer: a tiny model trained to 100% on 12 tools scores 12 / 12; the untrained
    base with random code rows does not."""
    import json

    import torch

    from tasks.stages.finetune import FinetuneConfig, finetune
    from tests.align.test_train import MEMORIZE
    from tests.align.test_train_task import N_TOOLS, _store_with_inputs
    from toolweaver.align.train import TrainConfig

    torch.set_num_threads(1)
    store, base = _store_with_inputs(tmp_path)
    random_rows = {"init": "random"}  # the store's codes are written by hand: no RQ-VAE codebooks
    config = FinetuneConfig(
        model=base, stages=("memorization",), train=TrainConfig(**{**MEMORIZE, "batch_size": 4}), vocab=random_rows
    )
    (memo,) = finetune(store, config, run_id="mem")
    undertrained = FinetuneConfig(
        model=base,
        stages=("memorization",),
        train=TrainConfig(**{**MEMORIZE, "epochs": 1, "lr": 1e-6}),
        vocab=random_rows,
    )
    (weak,) = finetune(store, undertrained, run_id="weak")
    bench = _load_bench("memorization")
    rows = bench.main(
        [
            "--store",
            str(store.root),
            memo.checkpoint_id,
            weak.checkpoint_id,
            "--device",
            "cpu",
            "--json",
            str(tmp_path / "mem.json"),
        ]
    )
    assert next((r["checkpoint"], r["tools"], r["hits"]) for r in rows) == (memo.checkpoint_id, N_TOOLS, N_TOOLS)
    assert rows[1]["hits"] < N_TOOLS / 2  # random code rows: about chance (1 / 12)
    assert rows == json.loads((tmp_path / "mem.json").read_text())


def test_finetune_bench_reports_time_to_target_row(tmp_path: Path) -> None:
    """A short smoke run on real ToolLens with a tiny model: 2 memorization steps checked at
    every step against an unreachable target (1.0), so the stage runs to its cap and the
    row says the target was not reached; the row's figures are the report's."""
    import torch

    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

    toollens = Path(__file__).resolve().parents[2] / "shared" / "data" / "toollens"
    if not (toollens / "corpus.jsonl").is_file():
        pytest.skip(f"{toollens} is absent (see README: Data)")
    torch.set_num_threads(1)
    tokenizer = tiny_tokenizer((toollens / "corpus.jsonl").read_text().splitlines(), max_words=3000)
    tiny_llama(len(tokenizer), seed=0).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    bench = _load_bench("finetune")
    argv = ["--model", str(tmp_path / "base"), "--device", "cpu", "--mem-max-steps", "2", "--ret-max-steps", "1"]
    argv += ["--train-queries", "8", "--val-queries", "3", "--mem-eval", "5", "--plain-steps", "0", "--target", "1"]
    argv += ["--check-every", "1", "--check-tools", "4", "--batch-size", "4", "--label", "smoke"]
    report = bench.main(argv)
    mem = report["memorization"]
    assert (mem["steps"], mem["stopped_early"], mem["time_to_target_s"]) == (2, False, None)
    assert mem["epochs"] == 2 / 116  # 464 tools in batches of 4
    assert mem["check_exact_match"] is not None and mem["check_s"] > 0
    row = bench.table_row(report, "smoke").split("|")
    assert [c.strip() for c in row[1:5]] == ["smoke", "464", "not reached", "2"]


def test_catalog_draw_holds_every_anchor_and_a_seeded_disjoint_sample() -> None:
    """The 10k catalog rule on known sets: all anchors, size - anchors pool keys that are not
    anchors, the same draw for the same seed whatever the input order, another for another seed."""
    import random

    catalog = _load_bench("catalog")
    anchors = [f"stb{i}&&a" for i in range(30)]
    pool = [f"env{i}&&a" for i in range(200)] + anchors[:10]  # the pool overlaps the anchors
    keys = catalog.draw_catalog(anchors, pool, 100, seed=0)
    assert len(keys) == len(set(keys)) == 100 and set(anchors) <= set(keys)
    assert len(set(keys) - set(anchors)) == 70 and set(keys) - set(anchors) <= set(pool) - set(anchors)
    shuffled = random.Random(1).sample(pool, len(pool))
    assert catalog.draw_catalog(reversed(anchors), shuffled, 100, seed=0) == keys
    assert catalog.draw_catalog(anchors, pool, 100, seed=1) != keys
    assert len(catalog.draw_catalog(anchors, pool, -1, seed=0)) == 230  # every tool
    with pytest.raises(ValueError, match="only 200 are not anchors"):
        catalog.draw_catalog(anchors, pool, 231, seed=0)
    with pytest.raises(ValueError, match="smaller than the 30 anchor"):
        catalog.draw_catalog(anchors, pool, 29, seed=0)


def test_catalog_tool_file_subset_keeps_only_drawn_apis() -> None:
    catalog = _load_bench("catalog")
    data = {"tool_name": "T", "api_list": [{"name": "a"}, {"name": "b"}, "junk"]}
    assert catalog.tool_file_subset(data, {"T&&b"}) == {"tool_name": "T", "api_list": [{"name": "b"}]}
    assert catalog.tool_file_subset({"name": "T", "api_list": [{"name": "a"}]}, {"T&&a"})["api_list"] == [{"name": "a"}]
    assert catalog.tool_file_subset(data, {"U&&a"}) is None


@pytest.mark.slow
def test_gpu_check_dry_run_prints_every_part_ok(tmp_path: Path) -> None:
    """bench/gpu_check.sh --dry-run: every part at tiny scale on CPU, each under its limit, and
    one table whose projection follows from the measured fine-tuning rate (~2 min on 2 cores)."""
    import json
    import os

    done = subprocess.run(
        [str(BENCH / "gpu_check.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
        env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    status = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in rows[1:]}  # rows[0]: the header
    assert status == {
        "LoRA fine-tuning, SmolLM2-shaped (bf16 on CUDA)": "ok",
        "constrained decoding, top-5": "ok",
        "RQ-VAE + codes (bench/tokenize.py)": "ok",
        "PROJECTION: 47k memorization": "from the measured rate",
    }
    finetune = json.loads((tmp_path / "finetune.json").read_text())
    gpu_check = _load_bench("gpu_check")
    minutes = gpu_check.projection(finetune, 46_892, 4.0)["total_s"] / 60
    assert f"| {minutes:.0f} min |" in rows[-1]
    assert minutes == pytest.approx(46_892 * 60 * 4 / finetune["tokens_per_s"] / 60)


def test_finetune_bench_holds_out_the_pipelines_toollens_split() -> None:
    """Known answer: the pipeline's split holds out 1,675 of ToolLens's 16,893 training queries
    (the queries `evaluate` and the recipes score); the scored sample does not move with --seed."""
    toollens = Path(__file__).resolve().parents[2] / "shared" / "data" / "toollens"
    if not (toollens / "qrels" / "train.tsv").is_file():
        pytest.skip(f"{toollens} is absent (see README: Data)")
    bench = _load_bench("finetune")
    _, _, qrels = bench.read_toollens(toollens)
    held, train = bench.split_queries(qrels, -1, -1, seed=0)
    assert (len(held), len(train)) == (1675, 15218) and not set(held) & set(train)
    sample0, train0 = bench.split_queries(qrels, 200, 2000, seed=0)
    sample1, train1 = bench.split_queries(qrels, 200, 2000, seed=1)
    assert sample0 == sample1 and set(sample0) <= set(held) and len(sample0) == 200
    assert train0 != train1 and len(train1) == 2000 and set(train1) <= set(train)


def _recipe(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os

    done = subprocess.run(
        ["bash", str(BENCH / script)],
        env={**os.environ, "TOOLWEAVER": str(Path(sys.executable).with_name("toolweaver")), **env},
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _tiny_base(folder: Path, texts: list[str]) -> str:
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

    tokenizer = tiny_tokenizer(texts, max_words=2000)
    tiny_llama(len(tokenizer), hidden_size=32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _shared() -> Path:
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "toollens").is_dir():
        pytest.skip(f"{shared} is absent (see README: Data)")
    return shared


@pytest.mark.slow
def test_stabletoolbench_transfer_recipe_runs_at_tiny_scale(tmp_path: Path) -> None:
    """Memorise StableToolBench + ToolLens tools, train retrieval on ToolLens queries, evaluate
    the pair and the memorization-only checkpoints on StableToolBench (one group here)."""
    import json

    shared = _shared()
    store = tmp_path / "store"
    env = {
        "STB": str(shared / "toolbench" / "stabletoolbench"),
        "TOOLLENS": str(shared / "toollens"),
        "STORE": str(store),
        "MODEL": _tiny_base(tmp_path / "base", ["get weather forecast for a city"]),
        "DEVICE": "cpu",
        "MEM_EPOCHS": "1",
        "BATCH": "64",
        "LORA_R": "4",
        "RET_QUERIES": "64",
        "METHODS": "bm25,atomic,toolweaver",
        "DATASET": "stabletoolbench/G3_instruction",
        "MEM_LIMIT": "20",
    }
    done = _recipe("stabletoolbench_transfer.sh", env)
    rows = json.loads((store / "results" / "results.json").read_text())
    assert {r["method"] for r in rows} == {"bm25", "atomic", "toolweaver", "atomic-mem", "toolweaver-mem"}
    assert {r["n_queries"] for r in rows if r["metric"] == "ndcg@5"} == {61}
    assert {r["convention"] for r in rows} == {"standard", "toolgen"}
    from storage import Store

    metas = [json.loads(r["meta"]) for r in Store(store).checkpoints(kind="llm").to_pylist()]
    steps = {(m["tokens"], m["stage"]): m["step"] for m in metas}
    assert steps[("codes", "retrieval")] == steps[("atomic", "retrieval")] == 1  # 64 queries, batch 64
    mem = json.loads((store / "results" / "memorization.json").read_text())
    assert [r["tokens"] for r in mem] == ["codes", "atomic"] and {r["tools"] for r in mem} == {20}
    assert "[stabletoolbench_transfer] evaluate:" in done.stderr


@pytest.mark.slow
def test_catalog_recipe_runs_multi_domain_at_a_small_size(tmp_path: Path) -> None:
    """bench/catalog10k.sh at SIZE=2,600 (2,479 StableToolBench + 121 drawn): the catalog draw,
    both ingests, memorization of both LLMs and the multi-domain evaluation over every tool."""
    import json

    shared = _shared()
    store = tmp_path / "store"
    env = {
        "STB": str(shared / "toolbench" / "stabletoolbench"),
        "STORE": str(store),
        "SIZE": "2600",
        "MODEL": _tiny_base(tmp_path / "base", ["get weather forecast for a city"]),
        "DEVICE": "cpu",
        "MEM_EPOCHS": "1",
        "BATCH": "64",
        "LORA_R": "4",
        "METHODS": "bm25,atomic,toolweaver",
        "DATASET": "stabletoolbench/G3_instruction",
    }
    _recipe("catalog10k.sh", env)
    summary = json.loads((store / "catalog" / "catalog.json").read_text())
    assert (summary["tools"], summary["stabletoolbench"], summary["toolenv_drawn"]) == (2600, 2479, 121)
    from storage import Store

    tools = set(Store(store).read("tools", columns=["tool_id"]).column("tool_id").to_pylist())
    assert tools == set((store / "catalog" / "catalog.txt").read_text().split("\n")[:-1])
    rows = json.loads((store / "results" / "results.json").read_text())
    assert {r["setting"] for r in rows} == {"multi-domain"}
    assert {r["method"] for r in rows} == {"bm25", "atomic", "toolweaver"}
