"""The codes stage: RQ-VAE training and unique, stable tool codes.

Owns `codes`, `vocabulary`, `rqvae_epochs`, `collision_report`, `code_metrics` and the
`rqvae` checkpoints. It READS `embeddings` (tasks.stages.embed) and `cousage`
(tasks.stages.cousage) and never writes them: every table has one owning stage.

    train_and_assign    train the RQ-VAE, assign unique codes to every tool, register the
                        code-model checkpoint
    assign_incremental  with a registered code model and existing codes: encode only the
                        tools without a code and place them in free slots; existing codes
                        never change (a read-modify-write of `codes` through Store.update)
    build_codes         the stage: incremental unless `retrain` (or nothing exists yet)

`codes_version` is the code-model checkpoint id: every code row says which trained
code model placed it. A tool whose doc changes keeps its code (stability first); only an
explicit retrain recomputes all codes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from storage import SCHEMAS, Store, TableRef
from storage.commit import Append, Snapshot
from tasks.digests import config_hash
from tasks.stages.cousage import cousage_rows
from tasks.stages.embed import read_tools, tool_vectors
from toolweaver.codes import RQVAEConfig
from toolweaver.codes.assign import CollisionReport
from toolweaver.codes.embed import EmbedConfig, model_key

logger = logging.getLogger(__name__)

CHECKPOINT_KIND = "rqvae"

COLLISION_REPORT_SCHEMA = SCHEMAS["collision_report"]
VOCABULARY_SCHEMA = SCHEMAS["vocabulary"]
EPOCHS_SCHEMA = SCHEMAS["rqvae_epochs"]
METRICS_SCHEMA = SCHEMAS["code_metrics"]


class TokenizeConfig(BaseModel):
    """What `toolweaver tokenize` runs: how docs are embedded, how the code model is trained."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    rqvae: RQVAEConfig = Field(
        default_factory=RQVAEConfig,
        description="the code model (levels, codebook_size, epochs, lambda_cousage, seed, device, ...); "
        "a dict of overrides is validated into it",
    )
    retrain: bool = Field(False, description="retrain the code model and recompute every code")
    metrics_k: int = Field(10, ge=1, description="k of the decoded-latent nearest-neighbour recall")


@dataclass
class TokenizeResult:
    """What one run of the stage did (small: refs and counts)."""

    mode: str  # "full" | "incremental"
    n_embedded: int
    n_new_codes: int
    codes_version: str
    refs: dict[str, TableRef] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- training
def train_and_assign(store: Store, cfg: TokenizeConfig) -> TokenizeResult:
    """Train the code model on every tool and (re)assign all codes."""
    from toolweaver.codes import assign_codes, code_metrics, save_rqvae, train_rqvae, vocabulary

    tools = read_tools(store)
    tool_ids = tools.column("tool_id").to_pylist()
    x = tool_vectors(store, tools, cfg.embed)
    edges = cousage_rows(store, tool_ids)
    trained = train_rqvae(x, edges, cfg.rqvae)
    assignment = assign_codes(trained.model, x, trained.cfg)
    with tempfile.TemporaryDirectory(prefix="rqvae-") as tmp:
        folder = save_rqvae(trained.model, trained.cfg, Path(tmp) / "rqvae")
        version = store.register_checkpoint(
            CHECKPOINT_KIND,
            folder,
            config_hash=config_hash(cfg),
            meta={
                "embed_model_key": model_key(cfg.embed),
                "n_tools": len(tool_ids),
                "levels": trained.cfg.levels,
                "codebook_size": trained.cfg.codebook_size,
            },
        )
    inputs = _refs(store, "tools", "embeddings", "cousage")
    chash = config_hash(cfg)
    tokens = vocabulary(trained.cfg.levels, trained.cfg.codebook_size)
    refs = {
        "codes": _write_codes(store, tool_ids, assignment.code_matrix, version, "overwrite", inputs, chash),
        "vocabulary": store.write(
            "vocabulary", _vocabulary_rows(tokens, trained.cfg.codebook_size, version), inputs=inputs, config_hash=chash
        ),
        "rqvae_epochs": store.write(
            "rqvae_epochs", _epoch_rows(trained.epoch_metrics, version), inputs=inputs, config_hash=chash
        ),
        "collision_report": store.write(
            "collision_report",
            _report_rows(assignment.report, tool_ids, version, "full"),
            mode="append",
            inputs=inputs,
            config_hash=chash,
        ),
    }
    metrics = code_metrics(
        assignment.code_matrix,
        x,
        trained.model,
        edges,
        k=cfg.metrics_k,
        seed=trained.cfg.seed,
        report=assignment.report,
    )
    logger.info("code metrics: %s", metrics)
    refs["code_metrics"] = store.write(
        "code_metrics",
        _metrics_rows(metrics, version, "full", cfg.metrics_k),
        mode="append",
        inputs=[refs["codes"]],
        config_hash=chash,
    )
    return TokenizeResult("full", 0, len(tool_ids), version, refs, metrics)


# ----------------------------------------------------------------------------- incremental
def latest_code_model(store: Store) -> str | None:
    """Id of the newest registered rqvae checkpoint, None when there is none."""
    listing = store.checkpoints(CHECKPOINT_KIND)
    if listing.num_rows == 0:
        return None
    newest = listing.sort_by([("created_at", "descending")])
    return str(newest.column("checkpoint_id")[0].as_py())


def _current_code_model(store: Store) -> str | None:
    """The code model that placed the current codes (newest codes_version), None without codes."""
    if not store.exists("codes"):
        return None
    versions = set(store.read("codes", columns=["codes_version"]).column("codes_version").to_pylist())
    if not versions:
        return None
    if len(versions) > 1:
        raise RuntimeError(f"codes table mixes code models {sorted(versions)}; rerun with retrain")
    return versions.pop()


def assign_incremental(store: Store, cfg: TokenizeConfig, version: str) -> TokenizeResult:
    """Codes for the tools that have none, placed by code model `version`; existing rows untouched."""
    from toolweaver.codes import assign_new_codes, load_rqvae

    meta = _checkpoint_meta(store, version)
    if meta.get("embed_model_key") != model_key(cfg.embed):
        raise ValueError(
            f"code model {version} was trained on embeddings {meta.get('embed_model_key')!r}, not "
            f"{model_key(cfg.embed)!r}: use the same --model/template or pass --retrain"
        )
    model, rq_cfg = load_rqvae(store.checkpoint_path(version))
    _check_overrides(cfg, rq_cfg)
    tools = read_tools(store)
    placed: list[str] = []

    def place_new(snapshot: Snapshot) -> dict[str, Append]:
        # Re-run on a conflict: free slots depend on the codes another writer just placed.
        codes = snapshot.read("codes")
        assert codes is not None
        codes = codes.sort_by("tool_id")
        have = set(codes.column("tool_id").to_pylist())
        new_mask = np.array([t not in have for t in tools.column("tool_id").to_pylist()], dtype=bool)
        new_tools = tools.filter(pa.array(new_mask))
        placed[:] = new_tools.column("tool_id").to_pylist()
        if not placed:
            return {}
        existing = np.array(codes.column("levels").to_pylist(), dtype=np.int64).reshape(-1, rq_cfg.levels)
        levels = assign_new_codes(model, tool_vectors(store, new_tools, cfg.embed), existing, rq_cfg)
        return {"codes": Append(_code_rows(placed, levels, version))}

    inputs = _refs(store, "tools", "embeddings", "codes")
    refs = store.update(["codes"], place_new, inputs=inputs, config_hash=config_hash(cfg))
    if not placed:
        logger.info("incremental codes: every tool already has a code (code model %s)", version)
        return TokenizeResult("incremental", 0, 0, version, {"codes": store.latest("codes")})
    logger.info("incremental codes: %d new tools placed (code model %s)", len(placed), version)
    return TokenizeResult("incremental", 0, len(placed), version, {"codes": refs["codes"]})


def _check_overrides(cfg: TokenizeConfig, trained: Any) -> None:
    """Fail when the caller asked for code-model settings that differ from the trained one."""
    # Asked for = differs from the schema default (a config that went through JSON has
    # every field set, so "set explicitly" cannot be told apart any more).
    ignore = {"device", "amp"}
    requested, defaults = cfg.rqvae, RQVAEConfig()
    differs = {
        k: (getattr(requested, k), getattr(trained, k))
        for k in type(requested).model_fields
        if k not in ignore
        and getattr(requested, k) != getattr(defaults, k)
        and getattr(requested, k) != getattr(trained, k)
    }
    if differs:
        raise ValueError(
            f"the existing code model differs from the requested settings {differs} (requested, trained); "
            "pass --retrain to retrain with them"
        )


def _checkpoint_meta(store: Store, version: str) -> dict[str, Any]:
    rows = store.checkpoints(CHECKPOINT_KIND).filter(pc.field("checkpoint_id") == version)
    if rows.num_rows == 0:
        raise KeyError(f"codes name code model {version!r}, which is not registered in {store.root}")
    return json.loads(rows.column("meta")[0].as_py() or "{}")


# ----------------------------------------------------------------------------- the stage
def build_codes(store: Store, cfg: TokenizeConfig) -> TokenizeResult:
    """Place new tools with the current tokenizer, or train one (when asked or none exists).

    Needs every tool embedded under `cfg.embed` (the embed stage) and reads `cousage`.
    """
    version = _current_code_model(store)
    if cfg.retrain or version is None:
        return train_and_assign(store, cfg)
    return assign_incremental(store, cfg, version)


# ----------------------------------------------------------------------------- arrow rows
def _refs(store: Store, *tables: str) -> list[TableRef]:
    return [ref for ref in (store.latest(t) for t in tables) if ref is not None]


def _write_codes(
    store: Store,
    tool_ids: Sequence[str],
    levels: np.ndarray,
    version: str,
    mode: str,
    inputs: Sequence[TableRef],
    chash: str,
) -> TableRef:
    rows = _code_rows(tool_ids, levels, version)
    return store.write("codes", rows, mode=mode, inputs=inputs, config_hash=chash)  # type: ignore[arg-type]


def _code_rows(tool_ids: Sequence[str], levels: np.ndarray, version: str) -> pa.Table:
    from toolweaver.codes import format_code

    return pa.table(
        {
            "tool_id": pa.array(list(tool_ids), pa.string()),
            "levels": pa.array([[int(c) for c in row] for row in levels], pa.list_(pa.int32())),
            "code": pa.array([format_code(row) for row in levels.tolist()], pa.string()),
            "codes_version": pa.array([version] * len(tool_ids), pa.string()),
        },
        schema=SCHEMAS["codes"],
    )


def _vocabulary_rows(tokens: Sequence[str], codebook_size: int, version: str) -> pa.Table:
    return pa.table(
        {
            "token": pa.array(list(tokens), pa.string()),
            "level": pa.array([i // codebook_size for i in range(len(tokens))], pa.int32()),
            "code": pa.array([i % codebook_size for i in range(len(tokens))], pa.int32()),
            "codes_version": pa.array([version] * len(tokens), pa.string()),
        },
        schema=VOCABULARY_SCHEMA,
    )


def _epoch_rows(epoch_metrics: Sequence[dict[str, Any]], version: str) -> pa.Table:
    names = EPOCHS_SCHEMA.names
    rows = [{**{n: m.get(n) for n in names}, "codes_version": version} for m in epoch_metrics]
    return pa.Table.from_pylist(rows, schema=EPOCHS_SCHEMA)


def _report_rows(report: CollisionReport, tool_ids: Sequence[str], version: str, mode: str) -> pa.Table:
    row = {n: getattr(report, n, None) for n in COLLISION_REPORT_SCHEMA.names}
    row.update(codes_version=version, mode=mode, moved_tool_ids=[tool_ids[i] for i in report.moved])
    return pa.Table.from_pylist([row], schema=COLLISION_REPORT_SCHEMA)


def _metrics_rows(metrics: dict[str, Any], version: str, mode: str, k: int) -> pa.Table:
    row = {n: metrics.get(n) for n in METRICS_SCHEMA.names}
    row.update(codes_version=version, mode=mode, k=k, recall_at_k=metrics.get(f"recall_at_{k}"))
    return pa.Table.from_pylist([row], schema=METRICS_SCHEMA)
