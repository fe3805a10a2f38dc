"""The evaluate stage: inputs from the store or a BEIR folder -> ``eval_results`` rows.

Reads ``tools``/``queries``/``qrels`` through ``storage``, runs every requested method
through the pure harness (``toolweaver.eval``), appends the rows to ``eval_results``
(one Delta version per run, with lineage to the table versions it read) and writes the
markdown + PNG report when asked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from storage import SCHEMAS, Store, TableRef
from tasks import digests
from tasks.stages.lifecycle import active_codes, filter_qrels, retired_tools
from toolweaver.align.atomic import atomic_tokens
from toolweaver.align.splits import SplitConfig
from toolweaver.eval.harness import SETTINGS, EvalRow, Setting, evaluate_method
from toolweaver.eval.methods import MethodsConfig, build_method, llm_base
from toolweaver.eval.report import write_report
from toolweaver.eval.sets import Inputs, NothingToEvaluate, build_from_records, read_beir

logger = logging.getLogger(__name__)

TABLE = "eval_results"
EVAL_RESULTS_SCHEMA = SCHEMAS[TABLE]
INPUT_TABLES: tuple[str, ...] = ("tools", "queries", "qrels")


class EvaluateConfig(BaseModel):
    """What to evaluate and how."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    methods: tuple[str, ...] = ("bm25", "dense")
    settings: tuple[Setting, ...] = SETTINGS
    split: SplitConfig = SplitConfig()
    method_configs: MethodsConfig = MethodsConfig()
    ingest_beir: bool = Field(True, description="ingest a --beir folder into the store before evaluating")
    code_new_tools: bool = Field(
        True,
        description="code-based LLM methods: give catalog tools without a code one (stable incremental assignment)",
    )


def _versions(refs: Sequence[TableRef]) -> dict[str, int]:
    return {ref.table: ref.version for ref in refs}


def beir_inputs(store: Store, path: Path, config: EvaluateConfig) -> tuple[Inputs, dict[str, object], list[TableRef]]:
    """Inputs of a BEIR folder; its docs join the store's catalog for the multi-domain setting."""
    if config.ingest_beir:
        from tasks.stages.ingest import ingest  # the ingest stage owns the store's catalog tables

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


def store_inputs(
    store: Store, selector: str, config: EvaluateConfig
) -> tuple[Inputs, dict[str, object], list[TableRef]]:
    """Inputs of an ingested query set: ``source`` or ``source/query_group`` (e.g. ``stabletoolbench/G1_tool``)."""
    missing = [t for t in INPUT_TABLES if not store.exists(t)]
    if missing:
        raise FileNotFoundError(
            f"store {store.root} has no {missing} table(s); run `toolweaver ingest` first or use --beir DIR"
        )
    source, _, group = selector.partition("/")
    refs = [store.latest(t) for t in INPUT_TABLES]
    tables = {ref.table: store.read(ref.table, version=ref.version).to_pylist() for ref in refs if ref is not None}
    variants_ref = store.latest("tool_doc_variants")
    variants = (
        store.read(
            "tool_doc_variants", version=variants_ref.version, columns=["tool_id", "source", "origin"]
        ).to_pylist()
        if variants_ref
        else []
    )
    inputs = build_from_records(
        selector,
        tables["tools"],
        tables["queries"],
        filter_qrels(tables["qrels"], retired_tools(store)),  # a retired tool is no answer any more
        source=source,
        query_group=group or None,
        split_config=config.split,
        variants=variants,
    )
    used = [r for r in (*refs, variants_ref) if r is not None]
    return inputs, _versions(used), used


@dataclass(frozen=True)
class MethodCodes:
    """What an LLM method decodes: tool_id -> code (or atomic token), and the codes it came from."""

    codes: dict[str, str]
    ref: TableRef  # the `codes` table version read
    codes_version: str
    tokens: str  # codes | atomic


def _ref_at(store: Store, table: str, version: int) -> TableRef:
    """The ref of an older table version (digest from its lineage record when the store wrote it)."""
    latest = store.latest(table)
    if latest is not None and latest.version == version:
        return latest
    info = next((v for v in store.history(table) if v.version == version), None)
    if info is not None and info.lineage is not None:
        return TableRef(table, version, info.lineage.digest, info.lineage.rows)
    return TableRef(table, version, "", store.read(table, version=version, columns=["tool_id"]).num_rows)


def codes_of_version(
    store: Store, codes_version: str, table_version: int | None = None
) -> tuple[dict[str, str], TableRef]:
    """tool_id -> code of code model `codes_version`, read at `table_version` when given, else
    at the newest `codes` table version holding that codes version: the table holds one
    codes version at a time (a retokenisation, e.g. `tokenize --retrain --lambda 0`,
    overwrites it), so an older model's codes are found in the table's history, with the
    tools incrementally added to them since."""
    latest = store.latest("codes")
    if latest is None:
        raise FileNotFoundError(f"store {store.root} has no codes table; run the codes stage first")
    candidates = [table_version] if table_version is not None else range(latest.version, -1, -1)
    for version in candidates:
        table = store.read("codes", version=version, columns=["tool_id", "code", "codes_version"]).to_pydict()
        codes = {
            t: c
            for t, c, v in zip(table["tool_id"], table["code"], table["codes_version"], strict=True)
            if v == codes_version
        }
        if codes:
            return codes, _ref_at(store, "codes", version)
    where = f"version {table_version}" if table_version is not None else f"any of its versions 0..{latest.version}"
    raise KeyError(
        f"the codes table holds no codes of {codes_version!r} in {where}; "
        "evaluate with the store the model was trained on"
    )


def checkpoint_codes(store: Store, meta: Mapping[str, object]) -> MethodCodes:
    """The codes a checkpoint decodes with, from its meta (`tokens`, `codes_version`,
    `codes_table_version`), retired tools left out: `codes` -> the newest codes of its
    version (incrementally placed tools included); `atomic` -> the atomic token of every tool of the exact table
    version it was trained on (its HF tokenizer has a token for those tools only)."""
    if "codes_version" not in meta:
        raise KeyError("checkpoint meta has no 'codes_version': cannot tell which codes it was trained on")
    tokens = str(meta.get("tokens", "codes"))
    codes_version = str(meta["codes_version"])
    table_version = meta.get("codes_table_version")
    if tokens == "atomic":
        if table_version is None:
            raise KeyError(
                "atomic checkpoint meta has no 'codes_table_version': cannot tell which tools it has tokens for"
            )
        codes, ref = codes_of_version(store, codes_version, int(table_version))
        # Retired tools leave the trie; the others keep their tokens (numbered before filtering).
        return MethodCodes(active_codes(store, atomic_tokens(codes)), ref, codes_version, tokens)
    if tokens != "codes":
        raise ValueError(f"unknown token scheme {tokens!r} in checkpoint meta (codes | atomic)")
    codes, ref = codes_of_version(store, codes_version)
    return MethodCodes(active_codes(store, codes), ref, codes_version, tokens)


def llm_codes(store: Store, config: EvaluateConfig, catalog: Sequence[str] = ()) -> dict[str, MethodCodes]:
    """Codes of every LLM method's checkpoint. Code-based methods also get codes for the
    `catalog` tools that have none yet (`code_new_tools`, e.g. a BEIR corpus just
    ingested): placed by the stable incremental assignment, existing codes unchanged."""
    from toolweaver.align.models import read_checkpoint_meta

    out: dict[str, MethodCodes] = {}
    for method_id in (m for m in config.methods if llm_base(m) is not None):
        folder = config.method_configs.checkpoints.get(method_id)
        if folder is None:
            raise ValueError(f"{method_id}: pass --checkpoint {method_id}=CHECKPOINT_ID (a trained LLM checkpoint)")
        found = checkpoint_codes(store, read_checkpoint_meta(Path(folder)))
        expected = "atomic" if llm_base(method_id) == "atomic" else "codes"
        if found.tokens != expected:
            raise ValueError(f"{method_id}: checkpoint {folder} was trained with {found.tokens} tokens, not {expected}")
        missing = [t for t in catalog if t not in found.codes]
        if missing and config.code_new_tools and found.tokens == "codes":
            found = _with_new_codes(store, found, missing)
        out[method_id] = found
    return out


def _with_new_codes(store: Store, found: MethodCodes, missing: Sequence[str]) -> MethodCodes:
    """`found` plus codes for the `missing` tools that are in the store's `tools` table."""
    from tasks.stages.codes import TokenizeConfig, assign_incremental
    from tasks.stages.embed import embed_tools

    embed = _embed_config(store, found.codes_version)
    embed_tools(store, embed)  # only docs without a vector are embedded
    current = store.latest("codes")
    if current is not None and current.version == found.ref.version:
        # The store's current codes: extend them in the store (appended rows, one version).
        result = assign_incremental(store, TokenizeConfig(embed=embed), found.codes_version)
        codes, ref = codes_of_version(store, found.codes_version)
        logger.info(
            "coded %d new tools with code model %s (codes v%d)", result.n_new_codes, found.codes_version, ref.version
        )
    else:
        # An older codes version (replaced by a retokenisation): extend it in memory only.
        codes, ref = {**found.codes, **_place_in_memory(store, found, missing, embed)}, found.ref
    still = sum(t not in codes for t in missing)
    if still:
        logger.warning(
            "%d catalog tools are not in the store's tools table and stay uncoded (ingest them first)", still
        )
    return MethodCodes(codes, ref, found.codes_version, found.tokens)


def _place_in_memory(store: Store, found: MethodCodes, missing: Sequence[str], embed) -> dict[str, str]:
    import numpy as np
    import pyarrow.compute as pc

    from tasks.stages.embed import read_tools, tool_vectors
    from toolweaver.codes import assign_new_codes, format_code, load_rqvae, parse_code

    tools = read_tools(store)
    tools = tools.filter(pc.is_in(tools.column("tool_id"), pa.array(sorted(set(missing)), pa.string())))
    if tools.num_rows == 0:
        return {}
    model, rq_cfg = load_rqvae(store.checkpoint_path(found.codes_version))
    # Every code of that version is taken, retired tools' too (`found.codes` leaves them out).
    taken, _ = codes_of_version(store, found.codes_version, found.ref.version)
    existing = np.array([parse_code(c) for c in taken.values()], dtype=np.int64)
    levels = assign_new_codes(model, tool_vectors(store, tools, embed), existing, rq_cfg)
    ids = tools.column("tool_id").to_pylist()
    logger.info(
        "placed %d new tools in memory with code model %s (not the store's codes)", len(ids), found.codes_version
    )
    return {t: format_code(row) for t, row in zip(ids, levels.tolist(), strict=True)}


def _embed_config(store: Store, codes_version: str):
    """The embedder the codes' code model was trained on (its meta `embed_model_key`)."""
    from toolweaver.codes.embed import EmbedConfig, model_key

    rows = [r for r in store.checkpoints(kind="rqvae").to_pylist() if r["checkpoint_id"] == codes_version]
    if not rows:
        raise KeyError(
            f"codes {codes_version!r} name no registered code model (rqvae checkpoint): new tools cannot be coded"
        )
    key = str(json.loads(rows[0]["meta"] or "{}").get("embed_model_key", ""))
    config = EmbedConfig(model=key.split("#", 1)[0], show_progress=False)
    if model_key(config) != key:
        raise ValueError(
            f"code model {codes_version} was trained on embeddings {key!r}, made with a non-default doc template or "
            "normalisation; code the new tools with `toolweaver tokenize` (same settings) before evaluating"
        )
    return config


def run_methods(
    inputs: Inputs, config: EvaluateConfig, versions: dict[str, object], codes: Mapping[str, MethodCodes]
) -> list[EvalRow]:
    """Fit and evaluate every configured method on the same inputs."""
    rows: list[EvalRow] = []
    for method_id in config.methods:
        method = build_method(method_id, config.method_configs, {m: c.codes for m, c in codes.items()})
        used = {**versions, "codes": codes[method_id].ref.version} if method_id in codes else versions
        rows.extend(evaluate_method(method, inputs.catalog, inputs.train, inputs.eval_sets, config.settings, used))
    return rows


def write_results(
    store: Store, rows: Sequence[EvalRow], inputs: Sequence[TableRef], config: EvaluateConfig
) -> TableRef:
    """Append the rows to ``eval_results`` as one new version."""
    return append_result_rows(store, [row.as_dict() for row in rows], digests.config_hash(config), inputs)


def append_result_rows(
    store: Store, rows: Sequence[Mapping[str, Any]], config_hash: str, inputs: Sequence[TableRef] = ()
) -> TableRef:
    """The one writer of ``eval_results`` (retrieval here, call accuracy in `tasks.stages.calls`):
    the rows, stamped with one `evaluated_at`, appended as one new version."""
    now = datetime.now(UTC)
    data = pa.Table.from_pylist([{**row, "evaluated_at": now} for row in rows], schema=EVAL_RESULTS_SCHEMA)
    return store.write(
        TABLE, data, mode="append", config_hash=config_hash, inputs=list(inputs), schema=EVAL_RESULTS_SCHEMA
    )


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
    catalog = sorted({t for inputs, _, _ in loaded for t in inputs.catalog})
    codes = llm_codes(store, config, catalog)
    refs = [c.ref for c in codes.values()]
    rows: list[EvalRow] = []
    for inputs, versions, input_refs in loaded:
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
        logger.warning(
            "%d tools in the catalog but %d have codes; the report counts the coded tools", n_catalog, len(levels)
        )
    return {**report, "codebook_size_source": k_source, "catalog_tools": n_catalog}
