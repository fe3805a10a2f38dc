"""The evaluate stage: inputs from the store or a BEIR folder -> ``eval_results`` rows.

Reads ``tools``/``queries``/``qrels`` through ``storage``, runs every requested method
through the pure harness (``toolweaver.eval``), appends the rows to ``eval_results``
(one Delta version per run, with lineage to the table versions it read) and writes the
markdown + PNG report when asked.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from storage import Store, TableRef, register_schema
from toolweaver.align.splits import SplitConfig
from toolweaver.eval.harness import SETTINGS, EvalRow, Setting, evaluate_method
from toolweaver.eval.methods import LLM_METHODS, MethodsConfig, build_method
from toolweaver.eval.report import write_report
from toolweaver.eval.sets import Inputs, NothingToEvaluate, build_from_records, read_beir

logger = logging.getLogger(__name__)

TABLE = "eval_results"
EVAL_RESULTS_SCHEMA = register_schema(
    TABLE,
    pa.schema(
        [
            pa.field("method", pa.string(), nullable=False),
            pa.field("setting", pa.string(), nullable=False),  # in-domain | multi-domain
            pa.field("convention", pa.string(), nullable=False),  # standard | toolgen
            pa.field("metric", pa.string(), nullable=False),  # ndcg@1 ... exact_set_acc
            pa.field("value", pa.float64(), nullable=False),
            pa.field("n_queries", pa.int64(), nullable=False),
            pa.field("dataset", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("zero_shot", pa.bool_(), nullable=False),
            pa.field("model", pa.string()),  # embedder / checkpoint id
            pa.field("data_versions", pa.string()),  # JSON
            pa.field("fit_s", pa.float64()),
            pa.field("rank_s", pa.float64()),
            pa.field("evaluated_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ]
    ),
)
INPUT_TABLES: tuple[str, ...] = ("tools", "queries", "qrels")


class EvaluateConfig(BaseModel):
    """What to evaluate and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    methods: tuple[str, ...] = ("bm25", "dense")
    settings: tuple[Setting, ...] = SETTINGS
    split: SplitConfig = SplitConfig()
    method_configs: MethodsConfig = MethodsConfig()
    ingest_beir: bool = Field(True, description="ingest a --beir folder into the store before evaluating")


def _versions(refs: Sequence[TableRef]) -> dict[str, int]:
    return {ref.table: ref.version for ref in refs}


def beir_inputs(store: Store, path: Path, config: EvaluateConfig) -> tuple[Inputs, dict[str, object], list[TableRef]]:
    """Inputs of a BEIR folder; its docs join the store's catalog for the multi-domain setting."""
    if config.ingest_beir:
        from tasks.ingest import ingest  # the ingest stage owns the store's catalog tables

        ingest(store, "beir", path)
    inputs = read_beir(path, split_config=config.split)
    refs = [r for r in (store.latest(t) for t in INPUT_TABLES) if r is not None]
    catalog = dict(inputs.catalog)
    if store.exists("tools"):
        stored = store.read("tools", columns=["tool_id", "doc_text"]).to_pydict()
        # BEIR docs keep their verbatim text; the rest of the catalog uses the stored doc.
        catalog = {**dict(zip(stored["tool_id"], stored["doc_text"], strict=True)), **catalog}
    versions: dict[str, object] = {**_versions(refs), "beir": str(path.resolve())}
    return Inputs(catalog=catalog, train=inputs.train, eval_sets=inputs.eval_sets), versions, refs


def store_inputs(store: Store, selector: str, config: EvaluateConfig) -> tuple[Inputs, dict[str, object], list[TableRef]]:
    """Inputs of an ingested query set: ``source`` or ``source/query_group`` (e.g. ``stabletoolbench/G1_tool``)."""
    missing = [t for t in INPUT_TABLES if not store.exists(t)]
    if missing:
        raise FileNotFoundError(f"store {store.root} has no {missing} table(s); run `toolweaver ingest` first or use --beir DIR")
    source, _, group = selector.partition("/")
    refs = [store.latest(t) for t in INPUT_TABLES]
    tables = {ref.table: store.read(ref.table, version=ref.version).to_pylist() for ref in refs if ref is not None}
    variants_ref = store.latest("tool_doc_variants")
    variants = store.read("tool_doc_variants", version=variants_ref.version, columns=["tool_id", "source", "origin"]).to_pylist() if variants_ref else []
    inputs = build_from_records(
        selector, tables["tools"], tables["queries"], tables["qrels"],
        source=source, query_group=group or None, split_config=config.split, variants=variants,
    )
    used = [r for r in (*refs, variants_ref) if r is not None]
    return inputs, _versions(used), used


def llm_codes(store: Store, config: EvaluateConfig) -> tuple[dict[str, dict[str, str]], list[TableRef]]:
    """tool_id -> code for every LLM method's checkpoint, from the ``codes`` table version it was trained on."""
    wanted = [m for m in config.methods if m in LLM_METHODS]
    if not wanted:
        return {}, []
    from toolweaver.align.models import read_checkpoint_meta

    ref = store.latest("codes")
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no codes table; run the codes stage before evaluating {wanted}")
    table = store.read("codes", version=ref.version, columns=["tool_id", "code", "codes_version"]).to_pydict()
    out: dict[str, dict[str, str]] = {}
    for method_id in wanted:
        folder = config.method_configs.checkpoints.get(method_id)
        if folder is None:
            raise ValueError(f"{method_id}: pass --checkpoint {method_id}=CHECKPOINT_ID (a trained LLM checkpoint)")
        trained_on = read_checkpoint_meta(Path(folder)).get("codes_version")
        out[method_id] = {
            t: c for t, c, v in zip(table["tool_id"], table["code"], table["codes_version"], strict=True) if v == trained_on
        }
        if not out[method_id]:
            raise ValueError(
                f"{method_id}: checkpoint {folder} was trained on codes {trained_on!r}, which the latest codes "
                f"table (version {ref.version}) does not hold; evaluate with the matching store"
            )
    return out, [ref]


def run_methods(
    inputs: Inputs, config: EvaluateConfig, versions: dict[str, object], codes: dict[str, dict[str, str]]
) -> list[EvalRow]:
    """Fit and evaluate every configured method on the same inputs."""
    rows: list[EvalRow] = []
    for method_id in config.methods:
        method = build_method(method_id, config.method_configs, codes)
        rows.extend(evaluate_method(method, inputs.catalog, inputs.train, inputs.eval_sets, config.settings, versions))
    return rows


def write_results(store: Store, rows: Sequence[EvalRow], inputs: Sequence[TableRef], config: EvaluateConfig) -> TableRef:
    """Append the rows to ``eval_results`` as one new version."""
    now = datetime.now(timezone.utc)
    data = pa.Table.from_pylist([{**row.as_dict(), "evaluated_at": now} for row in rows], schema=EVAL_RESULTS_SCHEMA)
    config_hash = hashlib.sha256(config.model_dump_json().encode()).hexdigest()
    return store.write(TABLE, data, mode="append", config_hash=config_hash, inputs=list(inputs), schema=EVAL_RESULTS_SCHEMA)


def evaluate(
    store: Store,
    config: EvaluateConfig,
    *,
    beir: Path | None = None,
    datasets: Sequence[str] = (),
    report_dir: Path | None = None,
    command: str = "",
) -> tuple[list[EvalRow], TableRef]:
    """The whole stage: every input set, every method; returns the rows and the written ref."""
    if beir is None and not datasets:
        raise ValueError("nothing to evaluate: give a BEIR folder (--beir DIR) or --dataset SOURCE[/GROUP]")
    loaded = [beir_inputs(store, beir, config)] if beir is not None else []
    skipped: list[str] = []
    for selector in datasets:
        try:
            loaded.append(store_inputs(store, selector, config))
        except NothingToEvaluate as err:
            # A catalog-only source (tools, no labelled queries) is not an error among several.
            logger.warning("skipping %s: %s", selector, err)
            skipped.append(str(err))
    if not loaded:
        raise NothingToEvaluate("nothing to evaluate: " + "; ".join(skipped))
    codes, refs = llm_codes(store, config)
    rows: list[EvalRow] = []
    for inputs, versions, input_refs in loaded:
        versions = {**versions, **{r.table: r.version for r in refs}}
        rows.extend(run_methods(inputs, config, versions, codes))
        refs.extend(input_refs)
    ref = write_results(store, rows, list({(r.table, r.version): r for r in refs}.values()), config)
    if report_dir is not None:
        write_report([row.as_dict() for row in rows], report_dir, command)
    return rows, ref


def resolve_checkpoints(store: Store, specs: Sequence[str]) -> dict[str, str]:
    """``METHOD=ID_OR_DIR`` -> {method: folder}; a checkpoint id is looked up in the store."""
    out: dict[str, str] = {}
    for spec in specs:
        method, sep, target = spec.partition("=")
        if not sep or not method or not target:
            raise ValueError(f"--checkpoint wants METHOD=CHECKPOINT_ID_OR_DIR, got {spec!r}")
        folder = Path(target)
        out[method] = str(folder if folder.is_dir() else store.checkpoint_path(target))
    return out


def store_vocabulary_report(store: Store) -> dict[str, object]:
    """Tokens added for the store's whole catalog: codes (L×K + Finish) vs atomic (one per tool + Finish).

    K comes from the codes stage's ``vocabulary`` table (its L×K code tokens) when present,
    else it is inferred as the largest code index + 1 (a lower bound, labelled as such).
    """
    from toolweaver.eval.costs import vocabulary_report

    if not store.exists("codes"):
        raise FileNotFoundError(f"store {store.root} has no codes table; run the codes stage first")
    levels = store.read("codes", columns=["levels"]).column("levels").to_pylist()
    n_levels = len(levels[0])
    if store.exists("vocabulary"):
        codebook_size, k_source = store.latest("vocabulary").rows // n_levels, "vocabulary table"
    else:
        codebook_size, k_source = 1 + max(max(code) for code in levels), "inferred (max index + 1)"
    report = vocabulary_report(levels, n_levels, codebook_size).as_dict()
    n_catalog = store.latest("tools").rows if store.exists("tools") else len(levels)
    if n_catalog != len(levels):
        logger.warning("%d tools in the catalog but %d have codes; the report counts the coded tools", n_catalog, len(levels))
    return {**report, "codebook_size_source": k_source, "catalog_tools": n_catalog}
