"""Stage `datasets`: read tools/codes/queries/qrels/trajectories from the store, build the
ShareGPT examples (`toolweaver.align.datasets`), write `sft_examples` and `sft_rejects`,
optionally export JSONL files for `datasets.load_dataset("json", ...)`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from storage import SCHEMAS, Store, TableRef
from tasks.digests import config_hash
from tasks.stages.lifecycle import filter_qrels, retired_tools
from toolweaver.align.datasets import BuiltDatasets, DatasetConfig, build_datasets, export_jsonl

logger = logging.getLogger(__name__)

SFT_EXAMPLES = "sft_examples"
SFT_REJECTS = "sft_rejects"
REQUIRED_INPUTS = ("tools", "codes")
OPTIONAL_INPUTS = ("queries", "qrels", "trajectories")

SFT_EXAMPLES_SCHEMA = SCHEMAS[SFT_EXAMPLES]
SFT_REJECTS_SCHEMA = SCHEMAS[SFT_REJECTS]


@dataclass(frozen=True)
class DatasetsResult:
    examples: TableRef
    rejects: TableRef
    exported: dict[str, Path]
    counts: dict[str, int]  # "stage.split" -> examples


def read_inputs(store: Store) -> tuple[dict[str, list[dict]], list[TableRef]]:
    """Latest rows of every input table (optional ones empty when absent) and their refs;
    codes and qrels of retired tools left out."""
    missing = [t for t in REQUIRED_INPUTS if not store.exists(t)]
    if missing:
        raise FileNotFoundError(
            f"store {store.root} has no table(s) {missing}: run `toolweaver ingest` and the codes stage first"
        )
    rows: dict[str, list[dict]] = {}
    refs: list[TableRef] = []
    for table in (*REQUIRED_INPUTS, *OPTIONAL_INPUTS):
        ref = store.latest(table) if store.exists(table) else None
        rows[table] = store.read(table, version=ref.version).to_pylist() if ref else []
        if ref:
            refs.append(ref)
    # A retired tool keeps its code row (never reused) but no example may answer with it.
    retired = retired_tools(store)
    rows["codes"] = [r for r in rows["codes"] if r["tool_id"] not in retired]
    rows["qrels"] = filter_qrels(rows["qrels"], retired)
    return rows, refs


def build_datasets_stage(
    store: Store,
    config: DatasetConfig,
    *,
    export_dir: Path | None = None,
    run_id: str | None = None,
) -> DatasetsResult:
    """Build and write `sft_examples` + `sft_rejects` (one version each); export JSONL if asked."""
    rows, refs = read_inputs(store)
    built = build_datasets(
        tools=rows["tools"],
        codes=rows["codes"],
        queries=rows["queries"],
        qrels=rows["qrels"],
        trajectories=rows["trajectories"],
        config=config,
    )
    examples_ref, rejects_ref = write_built(store, built, refs, config, run_id)
    exported = export_jsonl(built.examples, export_dir) if export_dir is not None else {}
    counts = dict(sorted(Counter(f"{e['stage']}.{e['split']}" for e in built.examples).items()))
    return DatasetsResult(examples_ref, rejects_ref, exported, counts)


def write_built(
    store: Store, built: BuiltDatasets, inputs: list[TableRef], config: DatasetConfig, run_id: str | None
) -> tuple[TableRef, TableRef]:
    digest = config_hash(config)
    examples = pa.Table.from_pylist(built.examples, schema=SFT_EXAMPLES_SCHEMA)
    rejects = pa.Table.from_pylist(built.rejects, schema=SFT_REJECTS_SCHEMA)
    ex_ref = store.write(SFT_EXAMPLES, examples, run_id=run_id, config_hash=digest, inputs=inputs)
    rej_ref = store.write(SFT_REJECTS, rejects, run_id=run_id, config_hash=digest, inputs=inputs)
    logger.info(
        "wrote %s v%d (%d rows), %s v%d (%d rows)",
        ex_ref.table,
        ex_ref.version,
        ex_ref.rows,
        rej_ref.table,
        rej_ref.version,
        rej_ref.rows,
    )
    return ex_ref, rej_ref
