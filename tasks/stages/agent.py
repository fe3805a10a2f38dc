"""Agent stage functions: a registered checkpoint as an `Agent`, and its standalone export.

A checkpoint decodes with the codes named in its meta (`codes_version`: an int is a
version of the `codes` table; a string is a tokenizer's codes version, see
`tasks.stages.evaluate.checkpoint_codes`). The catalog is built from the latest `tools`
rows of the coded tools (documentation message and argument schema).

Export writes a merged Hugging Face folder (LoRA adapters merged into the base weights;
safetensors, config, tokenizer with the code tokens, generation config) plus
`tools.json` (code -> tool id, call name, documentation, parameter schema), so that
`AutoModelForCausalLM.from_pretrained(DIR)` needs no project code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from storage import Store
from tasks.stages.evaluate import checkpoint_codes
from toolweaver.agent.catalog import TOOLS_JSON, CatalogTool, build_catalog, write_tools_json
from toolweaver.agent.loop import Agent
from toolweaver.align.models import load_checkpoint, read_checkpoint_meta

LLM_KIND = "llm"


@dataclass(frozen=True)
class LoadedCheckpoint:
    checkpoint_id: str
    folder: Path
    meta: dict[str, Any]
    codes: dict[str, str]  # tool_id -> code (or atomic token)


def pick_checkpoint(store: Store, checkpoint_id: str | None) -> tuple[str, Path]:
    """(id, folder) of the named llm checkpoint, or of the most recently registered one;
    a folder path is accepted as well (id = its name)."""
    if checkpoint_id is not None and Path(checkpoint_id).is_dir():
        return Path(checkpoint_id).name, Path(checkpoint_id)
    rows = store.checkpoints(kind=LLM_KIND).to_pylist() if store.exists("checkpoints") else []
    if not rows:
        raise FileNotFoundError(f"store {store.root} has no registered llm checkpoint: run `toolweaver finetune`")
    if checkpoint_id is None:
        row = max(rows, key=lambda r: (r["created_at"], r["checkpoint_id"]))
    else:
        matches = [r for r in rows if r["checkpoint_id"] == checkpoint_id]
        if not matches:
            known = ", ".join(sorted(r["checkpoint_id"] for r in rows)[-5:])
            raise KeyError(f"no {LLM_KIND!r} checkpoint {checkpoint_id!r}; latest ids: {known}")
        row = matches[0]
    return row["checkpoint_id"], store.checkpoint_path(row["checkpoint_id"])


def codes_of_checkpoint(store: Store, meta: Mapping[str, Any], checkpoint_id: str) -> dict[str, str]:
    """{tool_id: code} the checkpoint was trained on; a codes version the store lacks is an
    error naming the checkpoint and the codes version."""
    version = meta.get("codes_version")
    try:
        if isinstance(version, int):
            latest = store.latest("codes")
            if latest is None or version > latest.version:
                raise KeyError(f"the codes table has no version {version}")
            table = store.read("codes", version=version, columns=["tool_id", "code"]).to_pydict()
            return dict(zip(table["tool_id"], table["code"], strict=True))
        return checkpoint_codes(store, meta).codes
    except (KeyError, FileNotFoundError) as err:
        raise KeyError(
            f"checkpoint {checkpoint_id!r} was trained on codes version {version!r}, "
            f"which store {store.root} does not hold ({err.args[0] if err.args else err})"
        ) from err


def load_checkpoint_codes(store: Store, checkpoint: str | None) -> LoadedCheckpoint:
    checkpoint_id, folder = pick_checkpoint(store, checkpoint)
    meta = read_checkpoint_meta(folder)
    return LoadedCheckpoint(checkpoint_id, folder, meta, codes_of_checkpoint(store, meta, checkpoint_id))


def catalog_of(store: Store, codes: Mapping[str, str]) -> list[CatalogTool]:
    """Catalog entries of the coded tools, from the latest `tools` rows."""
    if not store.exists("tools"):
        raise FileNotFoundError(f"store {store.root} has no tools table: run `toolweaver ingest`")
    rows = [r for r in store.read("tools").to_pylist() if r["tool_id"] in codes]
    missing = len(codes) - len(rows)
    if missing:
        raise KeyError(f"{missing} coded tools have no row in the tools table (e.g. a retired tool)")
    return build_catalog(rows, codes)


def load_agent(store: Store, checkpoint: str | None, device: torch.device) -> tuple[Agent, LoadedCheckpoint]:
    loaded = load_checkpoint_codes(store, checkpoint)
    model, tokenizer = load_checkpoint(loaded.folder, device=device)
    return Agent(model, tokenizer, catalog_of(store, loaded.codes)), loaded


def export_checkpoint(store: Store, checkpoint: str | None, out_dir: Path) -> Path:
    """The standalone folder: merged weights, tokenizer, generation config, tools.json."""
    loaded = load_checkpoint_codes(store, checkpoint)
    catalog = catalog_of(store, loaded.codes)  # before any write: a missing tool fails first
    model, tokenizer = load_checkpoint(loaded.folder, device=torch.device("cpu"))
    if hasattr(model, "merge_and_unload"):  # a peft model: fold the adapter into the weights
        model = model.merge_and_unload()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; export into a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    meta = {
        "checkpoint_id": loaded.checkpoint_id,
        "codes_version": loaded.meta.get("codes_version"),
        "tokens": loaded.meta.get("tokens", "codes"),
        "base_model": loaded.meta.get("base_model"),
    }
    write_tools_json(catalog, out_dir / TOOLS_JSON, meta=meta)
    (out_dir / "toolweaver_export.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out_dir
