"""Changed and retired tools at stage level (fast): a catalog snapshot with 5 operations
edited and 5 removed -> 5 re-embedded, 0 codes changed, 5 retired (rows, never deletions,
visible through `toolweaver sql`); the constrained decoder cannot emit a retired code;
tools added later never get a retired code; a restored tool gets its old code back.

The whole rebuild (flows, tiny model continued from the last checkpoint) is the slow
test_lifecycle_rebuild.py."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from storage import Store
from tasks.stages.evaluate import checkpoint_codes
from tasks.stages.ingest import ingest
from tasks.stages.lifecycle import retired_tools
from tasks.stages.tokenize import TokenizeConfig, tokenize
from tests.codes.test_tokenize_stage import SMALL_RQVAE, CountingEmbedder
from tests.flows.lifecycle_catalog import operation_ids, tool_id, write_spec
from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, trie_for_codes
from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
from toolweaver.align.vocab import VocabConfig, add_code_tokens

N = 40
# K=16 codebooks: SMALL_RQVAE's K=128 with fewer tools than codewords gives a non-finite
# Sinkhorn cost (codes stage issue, reported); 16 x 16 slots hold the 60 tools used here.
RQVAE = {**SMALL_RQVAE, "codebook_size": 16, "latent_dim": 8, "batch_size": 64}
OPS = operation_ids(N)
EDITED, REMOVED, KEPT = OPS[:5], OPS[5:10], OPS[10:]


def codes_of(store: Store) -> dict[str, str]:
    rows = store.read("codes", columns=["tool_id", "code"]).to_pylist()
    return {r["tool_id"]: r["code"] for r in rows}


def sql(store: Store, query: str) -> list[dict]:
    from flows.cli import app

    out = CliRunner().invoke(app, ["sql", query, "--store", str(store.root), "--format", "json"])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def build_and_change(tmp_path: Path) -> tuple[Store, Path, dict[str, str], int, int]:
    """Ingest + tokenize the catalog, then ingest the edited snapshot and tokenize again:
    (store, spec path, codes before, tools embedded by the second tokenize, its new codes)."""
    spec = write_spec(tmp_path / "catalog" / "acme.json", OPS)
    store = Store(tmp_path / "store")
    cfg = TokenizeConfig(rqvae=RQVAE)
    assert ingest(store, "openapi", spec, snapshot=True)["lifecycle"]["counts"] == {
        "added": N,
        "changed": 0,
        "retired": 0,
    }
    tokenize(store, cfg, embedder=CountingEmbedder())
    before = codes_of(store)
    write_spec(spec, [*EDITED, *KEPT], edited=EDITED)
    summary = ingest(store, "openapi", spec, snapshot=True)
    assert summary["lifecycle"]["counts"] == {"added": 0, "changed": 5, "retired": 5}
    second = tokenize(store, cfg, embedder=CountingEmbedder())
    return store, spec, before, second.n_embedded, second.n_new_codes


def test_edited_are_reembedded_keep_codes_and_removed_are_retired(tmp_path: Path) -> None:
    store, _, before, n_embedded, n_new = build_and_change(tmp_path)
    assert (n_embedded, n_new) == (5, 0)  # 5 re-embedded, nothing re-coded
    after = codes_of(store)
    assert after == before  # 0 codes changed; retired tools keep their rows: never deleted
    assert retired_tools(store) == {tool_id(op) for op in REMOVED}
    assert set(store.read("tools").column("tool_id").to_pylist()) == {tool_id(op) for op in [*EDITED, *KEPT]}

    events = store.read("tool_events").to_pylist()
    changed = {r["tool_id"]: r for r in events if r["event"] == "changed"}
    assert set(changed) == {tool_id(op) for op in EDITED}
    old_hash = {r["tool_id"]: r["doc_hash"] for r in store.read("tools", version=0).to_pylist()}
    new_hash = {r["tool_id"]: r["doc_hash"] for r in store.read("tools").to_pylist()}
    for t, row in changed.items():
        assert (row["old_doc_hash"], row["new_doc_hash"]) == (old_hash[t], new_hash[t]) and old_hash[t] != new_hash[t]

    retired = sql(
        store, "SELECT tool_id, recorded_at, reason FROM tool_events WHERE event = 'retired' ORDER BY tool_id"
    )
    assert [r["tool_id"] for r in retired] == sorted(tool_id(op) for op in REMOVED)
    assert all(r["recorded_at"] and "not in the new openapi snapshot" in r["reason"] for r in retired)
    # history: the retired tools are still in the first version of `tools`
    assert {tool_id(op) for op in REMOVED} <= set(old_hash)


def test_decoder_cannot_emit_a_retired_code(tmp_path: Path) -> None:
    store, _, before, _, _ = build_and_change(tmp_path)
    version = store.read("codes", columns=["codes_version"]).column("codes_version")[0].as_py()
    found = checkpoint_codes(store, {"tokens": "codes", "codes_version": version})
    assert set(found.codes) == {tool_id(op) for op in [*EDITED, *KEPT]}
    tokenizer = tiny_tokenizer(["list the invoice records"])
    model = tiny_llama(len(tokenizer), seed=1)
    add_code_tokens(tokenizer, model, n_levels=2, codebook_size=16, config=VocabConfig(init="random"))
    trie = trie_for_codes(tokenizer, found.codes)
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": "list the invoice records"}])
    # exhaustive beam: every code the decoder can emit, ranked
    emitted = constrained_beam_search(model, prompt, trie, DecodeConfig(top_k=N, num_beams=N))
    emitted_ids = {trie.tool_ids[i] for i, _ in emitted}
    assert emitted_ids == set(found.codes)
    retired_codes = {before[tool_id(op)] for op in REMOVED}
    assert not retired_codes & {"".join(tokenizer.convert_ids_to_tokens(list(trie.sequences[i]))) for i, _ in emitted}


def test_added_tools_never_get_a_retired_code_and_a_restored_tool_gets_its_own(tmp_path: Path) -> None:
    store, spec, before, _, _ = build_and_change(tmp_path)
    extra = operation_ids(N + 20)[N:]
    comeback = REMOVED[0]
    write_spec(spec, [*EDITED, *KEPT, *extra, comeback], edited=EDITED)
    summary = ingest(store, "openapi", spec, snapshot=True)
    assert summary["lifecycle"]["counts"] == {"added": 21, "changed": 0, "retired": 0}
    result = tokenize(store, TokenizeConfig(rqvae=RQVAE), embedder=CountingEmbedder())
    assert result.n_new_codes == 20  # the restored tool still has its code
    codes = codes_of(store)
    assert len(set(codes.values())) == len(codes)  # unique over active and retired tools
    retired_codes = {before[tool_id(op)] for op in REMOVED}
    assert not retired_codes & {codes[tool_id(op)] for op in extra}
    assert codes[tool_id(comeback)] == before[tool_id(comeback)]
    events = [r for r in store.read("tool_events").to_pylist() if r["tool_id"] == tool_id(comeback)]
    assert [r["event"] for r in sorted(events, key=lambda r: r["recorded_at"])] == ["added", "retired", "restored"]
    assert retired_tools(store) == {tool_id(op) for op in REMOVED[1:]}


def test_per_file_reingest_retires_only_tools_of_the_files_read(tmp_path: Path) -> None:
    """Without --snapshot, a file not read again keeps its tools; with it, they retire."""
    folder = tmp_path / "catalog"
    write_spec(folder / "a" / "acme.json", OPS[:10])
    other = write_spec(folder / "b" / "acme.json", OPS[10:20])
    store = Store(tmp_path / "store")
    ingest(store, "openapi", folder)
    other.unlink()
    (folder / "b").rmdir()
    write_spec(folder / "a" / "acme.json", OPS[:8])
    per_file = ingest(store, "openapi", folder)["lifecycle"]
    assert per_file["retired"] == sorted(tool_id(op) for op in OPS[8:10])  # b/acme.json was not read
    snapshot = ingest(store, "openapi", folder, snapshot=True)["lifecycle"]
    assert snapshot["retired"] == sorted(tool_id(op) for op in OPS[10:20])
