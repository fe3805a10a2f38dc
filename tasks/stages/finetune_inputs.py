"""Inputs of the `finetune` stage besides its examples: the `codes` table, and what the
`codebook` init of the code-token rows needs (the RQ-VAE codebooks of the codes version)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from storage import Store, TableRef
from toolweaver.align.atomic import atomic_tokens


@dataclass(frozen=True)
class CodesInput:
    """The latest `codes` table: one row per tool, all of one codes version."""

    tool_ids: list[str]
    levels: list[list[int]]
    codes: list[str]
    codes_version: str
    ref: TableRef

    @property
    def n_levels(self) -> int:
        return len(self.levels[0])

    def atomic(self) -> dict[str, str]:
        """{code string: atomic token} of every tool (the rewrite map of the atomic scheme)."""
        token_of = atomic_tokens(self.tool_ids)
        return {code: token_of[t] for t, code in zip(self.tool_ids, self.codes, strict=True)}


def read_codes(store: Store) -> CodesInput:
    """The latest `codes` table (rows sorted by tool_id)."""
    ref = store.latest("codes")
    if ref is None:
        raise FileNotFoundError(f"store {store.root} has no codes table: run the codes stage first")
    table = store.read("codes", version=ref.version, columns=["tool_id", "levels", "code", "codes_version"]).sort_by(
        "tool_id"
    )
    versions = sorted(set(table.column("codes_version").to_pylist()))
    if len(versions) != 1:
        raise ValueError(f"codes v{ref.version} mixes codes versions {versions}; a model is trained on exactly one")
    columns = table.to_pydict()
    return CodesInput(columns["tool_id"], columns["levels"], columns["code"], versions[0], ref)


def codebook_init_inputs(store: Store, codes: CodesInput) -> dict:
    """`add_code_tokens` arguments of init='codebook': the RQ-VAE codebooks of the codes
    version (its tokenizer checkpoint) and the (levels, name) pairs to fit the map on."""
    from toolweaver.codes import load_rqvae

    try:
        folder = store.checkpoint_path(codes.codes_version)
    except KeyError as error:
        raise ValueError(
            f"vocab init 'codebook' (the default) needs the RQ-VAE checkpoint {codes.codes_version!r} that placed "
            f"the codes, and store {store.root} does not have it ({error}); run the codes stage, or choose "
            "another init (--vocab-init random)"
        ) from error
    rqvae, _ = load_rqvae(folder)
    books = rqvae.quantizer.codebooks.detach().cpu().numpy()
    names = {}
    if store.exists("tools"):
        tools = store.read("tools", columns=["tool_id", "tool_name", "api_name"]).to_pylist()
        names = {t["tool_id"]: f"{t['tool_name']} {t['api_name']}" for t in tools}
    return {
        "codebooks": list(books),
        "fit_levels": np.asarray(codes.levels, dtype=np.int64),
        "fit_names": [names.get(t, t.replace("&&", " ")) for t in codes.tool_ids],
    }


def codebook_size(store: Store, codes: CodesInput) -> int:
    """K of the codes' tokenizer (its registered meta), so that codes placed later for new
    tools (free slots anywhere in the codebook) have tokens too; without a registered
    tokenizer, the largest index used + 1."""
    used = 1 + max(max(levels) for levels in codes.levels)
    if store.exists("checkpoints"):
        for row in store.checkpoints(kind="rqvae").to_pylist():
            if row["checkpoint_id"] == codes.codes_version:
                return max(used, int(json.loads(row["meta"] or "{}").get("codebook_size") or used))
    return used
