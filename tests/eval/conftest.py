"""A small BEIR folder cut from the real ToolLens data (60 docs, 100 test + 100 train queries)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

N_DOCS = 60


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on the shared 2-core test machine, a second thread mostly spins
    waiting for a busy core (measured 7x slower MiniLM training steps under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


N_TEST = 100
N_TRAIN = 100


def _read_qrels(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        qid, doc_id, _ = line.split("\t")
        if doc_id not in out[qid]:
            out[qid].append(doc_id)
    return out


@pytest.fixture(scope="session")
def small_beir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BEIR folder with the 60 most-used ToolLens docs and queries that only need them."""
    src = shared_data / "toollens"
    qrels = _read_qrels(src / "qrels" / "train.tsv")
    usage = Counter(d for docs in qrels.values() for d in docs)
    keep_docs = {d for d, _ in sorted(usage.items(), key=lambda kv: (-kv[1], int(kv[0])))[:N_DOCS]}
    texts = {json.loads(line)["_id"]: line for line in (src / "queries.jsonl").read_text(encoding="utf-8").splitlines()}
    eligible = sorted((q for q, docs in qrels.items() if set(docs) <= keep_docs and q in texts), key=int)
    test, train = eligible[:N_TEST], eligible[N_TEST : N_TEST + N_TRAIN]
    assert len(test) == N_TEST and len(train) == N_TRAIN, "ToolLens changed: not enough eligible queries"

    out = tmp_path_factory.mktemp("beir") / "toollens_small"
    (out / "qrels").mkdir(parents=True)
    corpus = [
        line
        for line in (src / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
        if json.loads(line)["_id"] in keep_docs
    ]
    (out / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf-8")
    (out / "queries.jsonl").write_text("\n".join(texts[q] for q in test + train) + "\n", encoding="utf-8")
    for split, ids in (("test", test), ("train", train)):
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q in ids for d in qrels[q]]
        (out / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
