"""``toolretriever``: the embedder fine-tuned on the training queries (the papers' ToolRetriever).

Contrastive training with in-batch negatives (sentence-transformers
``MultipleNegativesRankingLoss``) on (query, relevant tool doc) pairs. A batch never
holds the same query or the same doc twice: ToolLens queries need several tools, and
a second pair of the same query would make its other relevant tool a false negative.
The step budget is bounded (``max_steps``) so a CPU run finishes in minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import torch
from pydantic import Field
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

from toolweaver.eval.base import TrainQuery
from toolweaver.eval.dense import DenseConfig, DenseMethod

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
LOG_EVERY = 20  # steps between progress lines


class ToolRetrieverConfig(DenseConfig):
    """Fine-tuning budget and optimiser settings (CPU-sized by default)."""

    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(200, ge=1, description="stop after this many optimiser steps (None: all epochs)")
    train_batch_size: int = Field(32, ge=2, description="in-batch negatives need at least 2 pairs per batch")
    learning_rate: float = Field(2e-5, gt=0)
    scale: float = Field(20.0, gt=0, description="inverse temperature of the cosine logits")
    max_seq_length: int = Field(128, ge=8)
    seed: int = 0


def training_pairs(
    train_queries: Sequence[TrainQuery], qrels: Mapping[str, Mapping[str, float]], tools: Mapping[str, str]
) -> list[Pair]:
    """(query text, doc text) for every relevant (query, tool) pair whose tool is in the catalog."""
    pairs = [
        (q.text, tools[tool_id])
        for q in train_queries
        for tool_id, rel in sorted(qrels.get(q.query_id, {}).items())
        if rel > 0 and tool_id in tools
    ]
    if not pairs:
        raise ValueError("toolretriever: no (query, relevant tool) pair found; check qrels and catalog keys")
    return pairs


def unique_batches(pairs: Sequence[Pair], order: Sequence[int], batch_size: int) -> Iterator[list[Pair]]:
    """Batches in ``order`` with no repeated query or doc; clashing pairs move to a later batch."""
    pending = list(order)
    while pending:
        batch: list[Pair] = []
        seen_q: set[str] = set()
        seen_d: set[str] = set()
        deferred: list[int] = []
        cursor = 0
        while cursor < len(pending) and len(batch) < batch_size:
            query, doc = pairs[pending[cursor]]
            if query in seen_q or doc in seen_d:
                deferred.append(pending[cursor])
            else:
                batch.append((query, doc))
                seen_q.add(query)
                seen_d.add(doc)
            cursor += 1
        pending = deferred + pending[cursor:]
        if len(batch) < 2:
            return  # only clashing pairs are left: one pair has no negative to learn from
        yield batch


class ToolRetrieverMethod(DenseMethod):
    """``toolretriever``: fine-tuned dense retrieval; ``train_losses`` records every step."""

    method_id = "toolretriever"
    zero_shot = False

    def __init__(self, config: ToolRetrieverConfig | None = None, model: SentenceTransformer | None = None) -> None:
        super().__init__(config or ToolRetrieverConfig(), model)
        self.config: ToolRetrieverConfig
        self.train_losses: list[float] = []

    @property
    def model_id(self) -> str:
        """The base embedder plus the fine-tuning budget that produced it."""
        cfg = self.config
        steps = len(self.train_losses)
        return f"{cfg.embedder}+mnrl(steps={steps},bs={cfg.train_batch_size},lr={cfg.learning_rate},seed={cfg.seed})"

    def fit(
        self,
        train_queries: Sequence[TrainQuery],
        qrels: Mapping[str, Mapping[str, float]],
        tools: Mapping[str, str],
    ) -> None:
        """Fine-tune on the training pairs, then embed the catalog with the tuned model."""
        if train_queries:
            self.train(training_pairs(train_queries, qrels, tools))
        else:
            # StableToolBench-like sets have no training queries: this is then plain `dense`.
            logger.warning("toolretriever: no training queries; evaluating the untuned embedder (zero-shot)")
            self.zero_shot = True
        self.index(tools)

    def _step(
        self, loss_fn: MultipleNegativesRankingLoss, batch: list[Pair], optimizer: torch.optim.Optimizer
    ) -> float:
        """One contrastive step: every other doc in the batch is a negative for each query."""
        loss = loss_fn(self._features(batch), None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    def pair_loss(self, pairs: Sequence[Pair]) -> float:
        """In-batch-negatives loss of ``pairs`` as one batch, without dropout or an update."""
        loss_fn = MultipleNegativesRankingLoss(self.model, scale=self.config.scale)
        self.model.eval()
        with torch.inference_mode():
            return float(loss_fn(self._features(pairs), None))

    def _features(self, pairs: Sequence[Pair]) -> list[dict[str, torch.Tensor]]:
        """Tokenised queries and docs on the model's device (the loss wants [queries, docs])."""
        device = self.model.device
        return [
            {k: v.to(device) for k, v in self.model.preprocess([p[i] for p in pairs]).items() if torch.is_tensor(v)}
            for i in (0, 1)
        ]

    def train(self, pairs: Sequence[Pair]) -> list[float]:
        """Run the bounded training loop; returns the per-step losses."""
        cfg = self.config
        if len({q for q, _ in pairs}) < 2 or len({d for _, d in pairs}) < 2:
            raise ValueError("toolretriever: in-batch negatives need at least 2 distinct queries and docs")
        # Dropout draws from the global RNG; seeding it makes a run repeatable.
        torch.manual_seed(cfg.seed)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        loss_fn = MultipleNegativesRankingLoss(self.model, scale=cfg.scale)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate)
        self.model.train()
        self.train_losses = []
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(pairs), generator=shuffle).tolist()
            for batch in unique_batches(pairs, order, cfg.train_batch_size):
                self.train_losses.append(self._step(loss_fn, batch, optimizer))
                if len(self.train_losses) % LOG_EVERY == 0:
                    recent = self.train_losses[-LOG_EVERY:]
                    logger.info(
                        "toolretriever: step %d, mean loss of the last %d steps %.4f",
                        len(self.train_losses),
                        len(recent),
                        sum(recent) / len(recent),
                    )
                if cfg.max_steps is not None and len(self.train_losses) >= cfg.max_steps:
                    break
            logger.info(
                "toolretriever: epoch %d done, %d steps, last loss %.4f",
                epoch,
                len(self.train_losses),
                self.train_losses[-1],
            )
            if cfg.max_steps is not None and len(self.train_losses) >= cfg.max_steps:
                break
        self.model.eval()
        return self.train_losses
