"""Build the harness inputs (catalog, training set, evaluation sets) from records.

Two entry points:

- :func:`read_beir` — a BEIR folder (``corpus.jsonl``, ``queries.jsonl``,
  ``qrels/<split>.tsv``). Tool ids, query ids and qrels come from the ingest parser
  (``toolweaver.ingest.beir``) so they match the catalog the LLM methods are coded
  on; the doc text BM25/dense index is the corpus ``title`` + ``text`` verbatim.
- :func:`build_from_records` — rows of the ``tools``, ``queries`` and ``qrels``
  tables (as dicts), selected by source / group / split.

When a set has no split other than ``train`` (ToolLens ships only its training
split), a seeded held-out ``validation`` part is carved from it with the same rule
the LLM training uses (``toolweaver.align.splits``), so every method sees the same
split.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from toolweaver.align.splits import SplitConfig, assign_split
from toolweaver.eval.base import TrainQuery, as_float
from toolweaver.eval.harness import EvalSet, TrainSet
from toolweaver.ingest import beir as beir_ingest
from toolweaver.ingest.records import ParseResult

logger = logging.getLogger(__name__)

TRAIN = "train"
VALIDATION = "validation"


class NothingToEvaluate(ValueError):
    """A query set has no labelled query outside ``train`` (e.g. a catalog-only source)."""


@dataclass(frozen=True)
class Inputs:
    """Everything the harness needs for one dataset."""

    catalog: dict[str, str]  # tool_id -> doc text
    train: TrainSet
    eval_sets: list[EvalSet]


@dataclass(frozen=True)
class _Query:
    query_id: str
    raw_id: str
    text: str
    split: str


def _verbatim_corpus(path: Path) -> dict[int, str]:
    """Line number -> ``title + " " + text`` of every corpus doc, exactly as written."""
    out: dict[int, str] = {}
    for number, line in enumerate((path / "corpus.jsonl").read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        doc = json.loads(line)  # a bad line was already quarantined by the ingest parser
        title = doc.get("title") or ""
        out[number] = f"{title} {doc['text']}" if title else doc["text"]
    return out


def parse_beir(path: Path, source: str) -> tuple[ParseResult, dict[str, str]]:
    """Ingest-parse a BEIR folder; return the parse and tool_id -> verbatim corpus text."""
    parsed = beir_ingest.parse(path, source=source)
    if parsed.quarantine:
        logger.warning("%s: %d records quarantined (first: %s)", path, len(parsed.quarantine), parsed.quarantine[0])
    verbatim = _verbatim_corpus(path)
    docs: dict[str, str] = {}
    for tool in parsed.tools:
        line = int(tool.origin.rsplit("#L", 1)[1])
        # Two corpus docs with one tool_id: the first keeps its text (the ingest merge picks one too).
        docs.setdefault(tool.tool_id, verbatim[line])
    return parsed, docs


BEIR_SOURCE = "beir"  # the ingest source name, so query ids match the ingested ``queries`` table


def read_beir(path: Path, dataset: str | None = None, split_config: SplitConfig | None = None) -> Inputs:
    """Harness inputs of a BEIR folder: every qrels split other than ``train`` is evaluated."""
    dataset = dataset or path.name
    parsed, docs = parse_beir(path, source=BEIR_SOURCE)
    queries = [_Query(q.query_id, q.raw_id, q.text, q.split) for q in parsed.queries]
    qrels = [(r.query_id, r.tool_id, float(r.relevance)) for r in parsed.qrels]
    return assemble(dataset, docs, list(docs), queries, qrels, split_config or SplitConfig())


def assemble(
    dataset: str,
    catalog: Mapping[str, str],
    domain_tool_ids: list[str],
    queries: Iterable[_Query],
    qrels: Iterable[tuple[str, str, float]],
    split_config: SplitConfig,
    eval_splits: Iterable[str] | None = None,
) -> Inputs:
    """Group queries by split; hold out a validation part when only ``train`` is labelled."""
    relevance: dict[str, dict[str, float]] = defaultdict(dict)
    for query_id, tool_id, rel in qrels:
        if rel > 0:
            relevance[query_id][tool_id] = rel
    labelled = [q for q in queries if q.query_id in relevance]
    splits = {q.split for q in labelled}
    if splits == {TRAIN}:
        logger.info(
            "%s: only a train split; holding out %.0f%% of it (seed %d) as validation",
            dataset,
            100 * split_config.validation_fraction,
            split_config.seed,
        )
        # Keyed by query_id exactly as the LLM datasets do, so every method sees one split.
        labelled = [
            _Query(q.query_id, q.raw_id, q.text, assign_split(q.query_id, q.split, split_config)) for q in labelled
        ]
    wanted = set(eval_splits) if eval_splits is not None else {q.split for q in labelled} - {TRAIN}
    if not wanted:
        raise NothingToEvaluate(f"{dataset}: no split to evaluate (labelled splits: {sorted(splits)})")
    train_queries = [q for q in labelled if q.split == TRAIN]
    train = TrainSet(
        dataset=dataset,
        queries=[TrainQuery(q.query_id, q.text) for q in train_queries],
        qrels={q.query_id: relevance[q.query_id] for q in train_queries},
    )
    eval_sets = []
    for split in sorted(wanted):
        members = [q for q in labelled if q.split == split]
        if not members:
            raise ValueError(
                f"{dataset}: split {split!r} has no labelled query (have {sorted({q.split for q in labelled})})"
            )
        eval_sets.append(
            EvalSet(
                dataset=dataset,
                split=split,
                queries={q.query_id: q.text for q in members},
                qrels={q.query_id: relevance[q.query_id] for q in members},
                domain_tool_ids=domain_tool_ids,
            )
        )
    logger.info(
        "%s: %d training queries; evaluating %s",
        dataset,
        len(train.queries),
        {s.split: len(s.qrels) for s in eval_sets},
    )
    return Inputs(catalog=dict(catalog), train=train, eval_sets=eval_sets)


def build_from_records(
    dataset: str,
    tools: Iterable[Mapping[str, object]],
    queries: Iterable[Mapping[str, object]],
    qrels: Iterable[Mapping[str, object]],
    *,
    source: str,
    query_group: str | None = None,
    eval_splits: Iterable[str] | None = None,
    split_config: SplitConfig | None = None,
    variants: Iterable[Mapping[str, object]] = (),
) -> Inputs:
    """Harness inputs from ``tools``/``queries``/``qrels`` table rows.

    Catalog: every tool row (``doc_text``). In-domain candidates: every tool ``source``
    documented (for a ``query_group``: in that group's file, when docs are filed by
    group) — in ``tools`` or, when another source's doc won the merge, in ``variants``
    (``tool_doc_variants`` rows) — plus every tool the selected queries' qrels name.
    """
    tool_rows = list(tools)
    catalog = {str(t["tool_id"]): str(t["doc_text"] or "") for t in tool_rows}
    selected = [
        _Query(str(q["query_id"]), str(q["raw_id"]), str(q["text"]), str(q["split"]))
        for q in queries
        if q["source"] == source and (query_group is None or q["query_group"] == query_group)
    ]
    if not selected:
        raise NothingToEvaluate(
            f"no query of source {source!r}" + (f" and group {query_group!r}" if query_group else "")
        )
    ids = {q.query_id for q in selected}
    pairs = [(str(r["query_id"]), str(r["tool_id"]), as_float(r["relevance"])) for r in qrels if r["query_id"] in ids]
    named = {tool_id for _, tool_id, rel in pairs if rel > 0}
    missing = sorted(named - catalog.keys())
    if missing:
        raise KeyError(f"{dataset}: {len(missing)} relevant tools are not in the tools table (first: {missing[:3]})")
    domain = documented_tools([*tool_rows, *variants], source, query_group) | named
    return assemble(
        dataset,
        catalog,
        [t for t in catalog if t in domain],
        selected,
        pairs,
        split_config or SplitConfig(),
        eval_splits,
    )


def documented_tools(rows: Iterable[Mapping[str, object]], source: str, query_group: str | None) -> set[str]:
    """Tool ids whose doc rows come from ``source`` — from the group's own file when the
    source's docs are filed by group (StableToolBench: ``G1_tool.json#…``), else all of them."""
    mine = [r for r in rows if r["source"] == source]
    if query_group is not None:
        in_group = {
            str(r["tool_id"])
            for r in mine
            if PurePosixPath(str(r.get("origin") or "").split("#", 1)[0]).stem == query_group
        }
        if in_group:
            return in_group
        logger.info("%s: docs are not filed by group %r; in-domain = every tool of the source", source, query_group)
    return {str(r["tool_id"]) for r in mine}
