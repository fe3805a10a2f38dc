"""The call-accuracy stage: BFCL's held-out half, every method, rows in `eval_results`.

Sets: per single-turn category a seeded sample of held-out questions (`per_category`,
None = all), and `conversations` held-out `multi_turn_base` conversations (the split is
`bfcl_half`, the one BFCL split the training stages use). Methods on one backbone:
`base` (the base model, the question's functions in context: BFCL's "given functions"
setting), `bm25` (BM25 top-k of the catalog in context + the base model), and LLM
checkpoints `atomic` / `toolweaver` (labels allowed: `toolweaver-<label>`), which select
among the catalog by generating codes. The catalog is every distinct function document
of the seven categories (a tool = one document: name + digest). Each (method, category)
yields four rows: `tool_selection_acc`, `call_acc` (AST accuracy; state-and-response
accuracy for multi-turn), `schema_valid_rate`, `s_per_call`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from storage import Store, TableRef
from tasks import digests
from tasks.stages.agent import catalog_of, codes_of_checkpoint
from tasks.stages.evaluate import append_result_rows
from toolweaver.agent.incontext import InContextCaller
from toolweaver.agent.loop import Agent, AgentConfig
from toolweaver.align.models import load_checkpoint, load_model, load_tokenizer, read_checkpoint_meta
from toolweaver.align.splits import bfcl_half, unit_hash
from toolweaver.eval.bm25 import BM25Method
from toolweaver.eval.call_methods import AgentRunner, Doc, DocSelector, InContextRunner, Outcome, summarise
from toolweaver.eval.calls import CATEGORIES, MULTI_TURN, load_category
from toolweaver.eval.methods import llm_base
from toolweaver.ingest.bfcl import CLASS_DOC_FILES, default_data_dir, document_id

logger = logging.getLogger(__name__)

IN_CONTEXT = ("base", "bm25")


class CallsConfig(BaseModel):
    """What to evaluate; `per_category` / `conversations` None means the whole held-out half."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    categories: tuple[str, ...] = CATEGORIES
    per_category: int | None = Field(default=100, ge=1)
    conversations: int | None = Field(default=50, ge=1)
    methods: tuple[str, ...] = ("base", "bm25", "atomic", "toolweaver")
    checkpoints: dict[str, str] = Field(default_factory=dict)  # LLM method -> checkpoint folder
    base_model: str = "smollm2"
    bm25_k: int = Field(default=5, ge=1)
    max_steps: int = Field(default=8, ge=1)
    sample_seed: int = 0
    split_seed: int = 0  # must be the seed the training examples were split with


def setting_of(method: str) -> str:
    return "given_functions" if method == "base" else "catalog"


def heldout_sample(items: Sequence[dict[str, Any]], n: int | None, config: CallsConfig) -> list[dict[str, Any]]:
    """Held-out items, in a seeded order, the first `n` (all when None)."""
    held = [i for i in items if bfcl_half(i["id"], config.split_seed) == "heldout"]
    held.sort(key=lambda i: unit_hash(config.sample_seed, f"calls\x00{i['id']}"))
    return held if n is None else held[:n]


def class_docs(data_dir: Path, classes: Sequence[str]) -> list[Doc]:
    docs: list[Doc] = []
    for name in classes:
        path = data_dir / "multi_turn_func_doc" / f"{CLASS_DOC_FILES[name]}.json"
        docs += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return docs


def catalog_documents(data_dir: Path, categories: Sequence[str]) -> dict[str, Doc]:
    """{document id: doc} over every function document of the categories."""
    out: dict[str, Doc] = {}
    for category in categories:
        for item in load_category(data_dir, category):
            docs = item.get("function") or class_docs(data_dir, item.get("involved_classes") or [])
            for doc in docs:
                doc_id = document_id(doc)
                if doc_id is not None:
                    out.setdefault(doc_id, doc)
    return out


def given_documents(_text: str, given: Sequence[Doc]) -> list[Doc]:
    """BFCL's standard setting: the question's own functions."""
    return list(given)


def bm25_selector(catalog: Mapping[str, Doc], k: int) -> DocSelector:
    """`select(text, given)` -> the BM25 top-k catalog documents for the text (given ignored)."""
    method = BM25Method()
    ids = sorted(catalog)
    method.fit([], {}, {i: json.dumps(catalog[i], ensure_ascii=False) for i in ids})

    def select(text: str, _given: Sequence[Doc]) -> list[Doc]:
        [ranking] = method.rank([text], ids, k)
        return [catalog[tool_id] for tool_id, _ in ranking]

    return select


def runner_for(
    method: str, store: Store, config: CallsConfig, catalog: Mapping[str, Doc], device: torch.device
) -> InContextRunner | AgentRunner:
    if method in IN_CONTEXT:
        caller = InContextCaller(load_model(config.base_model, device=device), load_tokenizer(config.base_model))
        select = given_documents if method == "base" else bm25_selector(catalog, config.bm25_k)
        return InContextRunner(caller, select)
    if llm_base(method) is None:
        raise ValueError(f"--task calls: unknown method {method!r}; use base, bm25, atomic, toolweaver (or a label)")
    folder = config.checkpoints.get(method)
    if folder is None:
        raise ValueError(f"{method}: pass --checkpoint {method}=CHECKPOINT_ID (a trained LLM checkpoint)")
    meta = read_checkpoint_meta(Path(folder))
    codes = codes_of_checkpoint(store, meta, Path(folder).name)
    in_catalog = {t: c for t, c in codes.items() if t in catalog}
    logger.info("%s: %d of %d catalog documents have a code", method, len(in_catalog), len(catalog))
    model, tokenizer = load_checkpoint(Path(folder), device=device)
    agent = Agent(model, tokenizer, catalog_of(store, in_catalog))
    return AgentRunner(agent, AgentConfig(max_steps=config.max_steps))


def run_method(
    runner: InContextRunner | AgentRunner, sets: Mapping[str, list[dict[str, Any]]], data_dir: Path
) -> dict[str, list[Outcome]]:
    out: dict[str, list[Outcome]] = {}
    for category, items in sets.items():
        if category in MULTI_TURN:
            out[category] = [runner.multi(e, class_docs(data_dir, e["involved_classes"])) for e in items]
        else:
            out[category] = [runner.single(q, category) for q in items]
        logger.info("%s: %s", category, summarise(out[category]))
    return out


def rows_of(method: str, outcomes: Mapping[str, list[Outcome]], model: str, versions: str) -> list[dict[str, Any]]:
    rows = []
    for category, items in outcomes.items():
        seconds = sum(o.seconds for o in items)
        for metric, value in summarise(items).items():
            rows.append(
                {
                    "method": method,
                    "setting": setting_of(method),
                    "convention": "bfcl",
                    "metric": metric,
                    "value": float(value),
                    "n_queries": len(items),
                    "dataset": f"bfcl/{category}",
                    "split": "heldout",
                    "zero_shot": method in IN_CONTEXT,
                    "model": model,
                    "data_versions": versions,
                    "fit_s": 0.0,
                    "rank_s": seconds,
                }
            )
    return rows


def evaluate_calls(
    store: Store, config: CallsConfig, *, device: torch.device, data_dir: Path | None = None
) -> tuple[list[dict[str, Any]], TableRef]:
    """Every method on the same held-out sets; appends the rows to `eval_results`."""
    data = data_dir or default_data_dir()
    sets = {
        c: heldout_sample(
            load_category(data, c), config.conversations if c in MULTI_TURN else config.per_category, config
        )
        for c in config.categories
    }
    catalog = catalog_documents(data, config.categories)
    versions = json.dumps({"bfcl_eval": _bfcl_version(), "catalog_documents": len(catalog)})
    rows: list[dict[str, Any]] = []
    for method in config.methods:
        runner = runner_for(method, store, config, catalog, device)
        model = config.base_model if method in IN_CONTEXT else config.checkpoints[method]
        rows += rows_of(method, run_method(runner, sets, data), model, versions)
    return rows, append_result_rows(store, rows, digests.config_hash(config))


def _bfcl_version() -> str:
    from importlib.metadata import version

    return version("bfcl-eval")
