"""Every LLM method id end to end on a tiny store (tiny Llama, real MiniLM codes), and
`evaluate --beir` on a folder whose corpus holds tools the store has never coded.

The store is built from a "seen" BEIR folder (45 of the 60 small-ToolLens docs and the
training queries that need only them), coded, and four checkpoints are trained on it:
`toolweaver` (codebook init), `toolweaver-init-random`, `atomic`, and — after
`tokenize --retrain --lambda 0` replaced the codes — `toolweaver-l0`. Evaluating the full
60-doc folder must code its 15 new tools for the code-based methods without touching the
existing codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

N_SEEN = 45
FINETUNE = ["--stages", "memorization", "--max-steps", "2", "--batch-size", "8", "--device", "cpu", "--lora-r", "4"]
TOKENIZE = ["--codebook-size", "16", "--epochs", "3", "--device", "cpu"]


def _seen_folder(small_beir: Path, out: Path) -> tuple[Path, set[str]]:
    """A BEIR folder with the first N_SEEN corpus docs and the train queries that need only them."""
    corpus = (small_beir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:N_SEEN]
    seen = {json.loads(line)["_id"] for line in corpus}
    rows = [
        line.split("\t") for line in (small_beir / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    ]
    by_query: dict[str, set[str]] = {}
    for qid, doc, _ in rows:
        by_query.setdefault(qid, set()).add(doc)
    keep = {q for q, docs in by_query.items() if docs <= seen}
    (out / "qrels").mkdir(parents=True)
    (out / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    queries = [
        line
        for line in (small_beir / "queries.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in keep
    ]
    (out / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf-8")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, d, _ in rows if q in keep]
    (out / "qrels" / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out, seen


def _tiny_base(small_beir: Path, out: Path) -> str:
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

    texts = [
        json.loads(line)["text"]
        for name in ("corpus.jsonl", "queries.jsonl")
        for line in (small_beir / name).read_text(encoding="utf-8").splitlines()
    ]
    tokenizer = tiny_tokenizer(texts, max_words=800)
    tiny_llama(len(tokenizer), hidden_size=32).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.stdout


def _finetune(store: Path, base: str, *extra: str) -> str:
    """Train; return the checkpoint id of the last stage."""
    out = _cli("finetune", "--store", str(store), "--model", base, *FINETUNE, *extra)
    return out.strip().splitlines()[-1].split("\t")[1]


def _codes(store) -> dict[str, tuple[str, str]]:
    return {r["tool_id"]: (r["code"], r["codes_version"]) for r in store.read("codes").to_pylist()}


@pytest.fixture(scope="module")
def trained(small_beir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    from storage import Store
    from tasks.stages.ingest import ingest

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("llm-methods")
    seen_dir, _ = _seen_folder(small_beir, root / "seen")
    store_dir = root / "store"
    store = Store(store_dir)
    ingest(store, "beir", seen_dir)
    base = _tiny_base(small_beir, root / "base")
    _cli("tokenize", "--store", str(store_dir), *TOKENIZE)
    _cli("datasets", "--store", str(store_dir), "--stage", "memorization", "--stage", "retrieval")
    codes_main = _codes(store)
    ckpt = {
        "toolweaver": _finetune(store_dir, base, "--vocab-init", "codebook"),
        "toolweaver-init-random": _finetune(store_dir, base, "--vocab-init", "random"),
        "atomic": _finetune(store_dir, base, "--tokens", "atomic"),
    }
    # The λ = 0 ablation: a retrained tokenizer replaces the codes; its model trains on them.
    _cli("tokenize", "--store", str(store_dir), *TOKENIZE, "--retrain", "--lambda", "0")
    _cli("datasets", "--store", str(store_dir), "--stage", "memorization", "--stage", "retrieval")
    codes_l0 = _codes(store)
    ckpt["toolweaver-l0"] = _finetune(store_dir, base)
    return {"store": store, "checkpoints": ckpt, "codes_main": codes_main, "codes_l0": codes_l0}


@pytest.fixture(scope="module")
def evaluated(trained: dict, small_beir: Path) -> list[dict]:
    store = trained["store"]
    args = [
        "evaluate",
        "--store",
        str(store.root),
        "--beir",
        str(small_beir),
        "--format",
        "json",
        "--methods",
        "bm25,atomic,toolweaver,toolweaver-l0,toolweaver-init-random",
    ]
    for method, checkpoint in trained["checkpoints"].items():
        args += ["--checkpoint", f"{method}={checkpoint}"]
    return json.loads(_cli(*args))


def test_checkpoint_meta_records_scheme_codes_and_init(trained: dict) -> None:
    from toolweaver.align.models import read_checkpoint_meta

    store, ckpt = trained["store"], trained["checkpoints"]
    meta = {m: read_checkpoint_meta(store.checkpoint_path(c)) for m, c in ckpt.items()}
    version_main = {v for _, v in trained["codes_main"].values()}.pop()
    version_l0 = {v for _, v in trained["codes_l0"].values()}.pop()
    assert version_main != version_l0  # the retrain registered a new tokenizer
    assert {m: (x["tokens"], x["vocab_init"], x["codes_version"]) for m, x in meta.items()} == {
        "toolweaver": ("codes", "codebook", version_main),
        "toolweaver-init-random": ("codes", "random", version_main),
        "atomic": ("atomic", "random", version_main),
        "toolweaver-l0": ("codes", "codebook", version_l0),  # the default init
    }
    assert meta["toolweaver-l0"]["codes_table_version"] > meta["toolweaver"]["codes_table_version"]


def test_every_method_id_is_evaluated(evaluated: list[dict]) -> None:
    methods = ("bm25", "atomic", "toolweaver", "toolweaver-l0", "toolweaver-init-random")
    assert {r["method"] for r in evaluated} == set(methods)
    for method in methods:
        ndcg = {
            (r["setting"], r["convention"]): r for r in evaluated if r["method"] == method and r["metric"] == "ndcg@5"
        }
        assert set(ndcg) == {(s, c) for s in ("in-domain", "multi-domain") for c in ("standard", "toolgen")}
        for row in ndcg.values():
            assert row["n_queries"] == 100 and 0.0 <= row["value"] <= 1.0 and row["split"] == "test"
    # Each LLM row names the codes table version its codes were read at.
    versions = {r["method"]: json.loads(r["data_versions"])["codes"] for r in evaluated if r["method"] != "bm25"}
    assert (
        versions["toolweaver"] == versions["toolweaver-init-random"] == versions["atomic"] < versions["toolweaver-l0"]
    )


def test_new_corpus_tools_are_coded_and_existing_codes_unchanged(
    trained: dict, evaluated: list[dict], small_beir: Path
) -> None:
    from tasks.stages.evaluate import EvaluateConfig, checkpoint_codes, llm_codes, resolve_checkpoints
    from toolweaver.align.models import read_checkpoint_meta
    from toolweaver.eval.methods import MethodsConfig

    store = trained["store"]
    tool_ids = store.read("tools", columns=["tool_id"]).column("tool_id").to_pylist()
    assert len(tool_ids) == 60  # the BEIR folder's 15 new docs joined the catalog
    # The store's current codes (λ = 0) were extended in the store: 60 rows, one version,
    # and the 45 codes that existed are unchanged.
    now = _codes(store)
    before = trained["codes_l0"]
    assert len(before) == N_SEEN and set(now) == set(tool_ids)
    assert {t: now[t] for t in before} == before
    assert len({c for c, _ in now.values()}) == 60 and len({v for _, v in now.values()}) == 1
    # The older (main) codes were extended in memory with the same rule: unique, old ones kept.
    config = EvaluateConfig(
        methods=("toolweaver", "atomic"),
        method_configs=MethodsConfig(
            checkpoints=resolve_checkpoints(
                store, [f"{m}={trained['checkpoints'][m]}" for m in ("toolweaver", "atomic")]
            )
        ),
    )
    codes = llm_codes(store, config, tool_ids)
    main = codes["toolweaver"].codes
    assert set(main) == set(tool_ids) and len(set(main.values())) == 60
    assert {t: main[t] for t in trained["codes_main"]} == {t: c for t, (c, _) in trained["codes_main"].items()}
    # Atomic tokens exist only for the tools the atomic model was trained on.
    assert set(codes["atomic"].codes) == set(trained["codes_main"])
    meta = read_checkpoint_meta(store.checkpoint_path(trained["checkpoints"]["toolweaver"]))
    assert checkpoint_codes(store, meta).codes == {t: c for t, (c, _) in trained["codes_main"].items()}


def test_a_checkpoint_of_the_wrong_scheme_is_refused(trained: dict, small_beir: Path) -> None:
    store, ckpt = trained["store"], trained["checkpoints"]
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--store",
            str(store.root),
            "--beir",
            str(small_beir),
            "--methods",
            "toolweaver",
            "--checkpoint",
            f"toolweaver={ckpt['atomic']}",
            "--no-ingest",
        ],
    )
    assert result.exit_code != 0 and "atomic tokens" in result.output
