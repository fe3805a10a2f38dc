"""toolretriever: batches without false negatives; training lowers the loss, deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolweaver.eval.sets import read_beir
from toolweaver.eval.toolretriever import ToolRetrieverConfig, ToolRetrieverMethod, training_pairs, unique_batches


def test_unique_batches_never_repeat_a_query_or_doc() -> None:
    pairs = [("q1", "A"), ("q1", "B"), ("q2", "A"), ("q3", "C"), ("q2", "B"), ("q4", "D")]
    batches = list(unique_batches(pairs, range(len(pairs)), batch_size=3))
    for batch in batches:
        assert len({q for q, _ in batch}) == len(batch) == len({d for _, d in batch})
    assert sorted(p for b in batches for p in b) == sorted(pairs)  # nothing lost here
    assert [len(b) for b in batches] == [3, 3]


@pytest.fixture(scope="module")
def small_pairs(small_beir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training pairs, a fixed probe batch of 16 training pairs with distinct queries and docs)."""
    inputs = read_beir(small_beir)
    train = training_pairs(inputs.train.queries, inputs.train.qrels, inputs.catalog)
    return train, next(unique_batches(train, range(len(train)), batch_size=16))


def test_training_lowers_the_loss_and_is_deterministic(small_pairs) -> None:
    train, probe = small_pairs
    config = ToolRetrieverConfig(max_steps=6, train_batch_size=8, learning_rate=1e-4, max_seq_length=64, seed=7)
    first = ToolRetrieverMethod(config)
    before = first.pair_loss(probe)
    losses = first.train(train)
    after = first.pair_loss(probe)
    assert len(losses) == 6
    assert after < before - 0.05, f"training loss on the probe batch did not drop: {before:.4f} -> {after:.4f}"

    second = ToolRetrieverMethod(config)
    assert second.train(train) == pytest.approx(losses, abs=1e-6)  # same seed, same run
