"""Constrained decoding: exactness vs brute force, parity with HF beam search, validity
under random logits (property test), candidate restriction, trie invariants."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toolweaver.align.decode import (
    DecodeConfig,
    TrieLogitsProcessor,
    constrained_beam_search,
    prompt_ids,
    retrieve,
    trie_for_codes,
)
from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
from toolweaver.align.trie import build_trie
from toolweaver.align.vocab import VocabConfig, add_code_tokens, format_code

K = 8
N_TOOLS = 30


@pytest.fixture(scope="module")
def setup():
    tokenizer = tiny_tokenizer(["find the weather in paris", "send an email to bob"])
    model = tiny_llama(len(tokenizer), seed=3, hidden_size=32)
    add_code_tokens(tokenizer, model, n_levels=3, codebook_size=K, config=VocabConfig(init="random", random_std=1.0))
    codes = {f"tool{i}": format_code([i % K, (i // K) % K, (i * 5) % K]) for i in range(N_TOOLS)}
    return tokenizer, model, codes, trie_for_codes(tokenizer, codes)


def _brute_force(model, prompt, trie, eos_in_score: bool) -> list[tuple[int, float]]:
    """Sequence log-prob of every code by teacher forcing, without any cache."""
    scored = []
    for index, seq in enumerate(trie.sequences):
        full = [*seq, trie.eos_id] if eos_in_score else list(seq)
        ids = torch.tensor([[*prompt, *full]])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
        positions = range(len(prompt) - 1, len(prompt) - 1 + len(full))
        scored.append((index, sum(float(logp[p, t]) for p, t in zip(positions, full, strict=False))))
    return sorted(scored, key=lambda p: -p[1])


@pytest.mark.parametrize("eos_in_score", [False, True])
def test_exhaustive_beam_equals_brute_force(setup, eos_in_score: bool) -> None:
    tokenizer, model, _, trie = setup
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": "find the weather"}])
    config = DecodeConfig(top_k=5, num_beams=N_TOOLS, eos_in_score=eos_in_score)
    got = constrained_beam_search(model, prompt, trie, config)
    want = _brute_force(model, prompt, trie, eos_in_score)[:5]
    assert [t for t, _ in got] == [t for t, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=False):
        assert a == pytest.approx(b, abs=1e-4)


def test_parity_with_hf_generate_and_trie_processor(setup) -> None:
    tokenizer, model, _, trie = setup
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": "send an email"}])
    ours = constrained_beam_search(model, prompt, trie, DecodeConfig(top_k=5, eos_in_score=True))
    out = model.generate(
        torch.tensor([prompt]),
        num_beams=5,
        num_return_sequences=5,
        max_new_tokens=4,
        do_sample=False,
        logits_processor=[TrieLogitsProcessor(trie, len(prompt))],
        length_penalty=0.0,
        early_stopping=True,
        output_scores=True,
        return_dict_in_generate=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    theirs = {}
    for seq, score in zip(out.sequences[:, len(prompt) :].tolist(), out.sequences_scores.tolist(), strict=False):
        assert seq[-1] == trie.eos_id
        theirs[trie.sequences.index(tuple(seq[:-1]))] = score
    assert [t for t, _ in ours] == sorted(theirs, key=lambda t: -theirs[t])
    for tool, score in ours:
        assert score == pytest.approx(theirs[tool], abs=1e-4)


def test_retrieve_returns_distinct_valid_tools_and_candidate_subset(setup) -> None:
    tokenizer, model, codes, trie = setup
    results = retrieve(model, tokenizer, "weather in paris", trie, DecodeConfig(top_k=5, num_beams=8))
    assert len(results) == 5 == len({r.tool_id for r in results})
    assert all(codes[r.tool_id] == r.code for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert all(r.score <= 0 for r in results)
    subset = ["tool3", "tool17", "tool29"]
    small = retrieve(model, tokenizer, "weather in paris", trie.restrict(subset), DecodeConfig(top_k=5))
    assert sorted(r.tool_id for r in small) == sorted(subset)
    with pytest.raises(KeyError, match="not in the trie"):
        trie.restrict(["nope"])


def test_trie_structure_and_errors() -> None:
    trie = build_trie({"x": [5, 6], "y": [5, 7], "z": [8]}, eos_id=1)
    assert trie.allowed(0).tolist() == [5, 8]
    assert trie.allowed(trie.walk([5])).tolist() == [6, 7]
    assert trie.allowed(trie.walk([5, 6])).tolist() == [1]
    assert trie.walk([5, 9]) is None
    with pytest.raises(ValueError, match="share a code"):
        build_trie({"x": [5, 6], "y": [5, 6]}, eos_id=1)
    with pytest.raises(ValueError, match="EOS"):
        build_trie({"x": [5, 1]}, eos_id=1)
    with pytest.raises(ValueError, match="DecodeConfig|num_beams"):
        DecodeConfig(top_k=5, num_beams=2)


# ---- property test: random logits never yield an invalid code -----------------------------


class _RandomCache:
    """Stands in for a KV cache: remembers nothing but supports beam reordering."""

    def __init__(self, batch: int) -> None:
        self.batch = batch

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.batch = len(beam_idx)


class _Output(dict):
    """Like transformers' ModelOutput: keys and attributes."""

    __getattr__ = dict.__getitem__


class _RandomLM(torch.nn.Module):
    """Logits are i.i.d. random (seeded) with a large scale, so every step is peaked at an
    arbitrary token, usually one the trie forbids."""

    def __init__(self, vocab_size: int, seed: int) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.vocab_size = vocab_size
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, input_ids, use_cache=True, logits_to_keep=0, cache=None, **_):
        cache = cache or _RandomCache(input_ids.shape[0])
        logits = torch.randn(input_ids.shape[0], 1, self.vocab_size, generator=self.generator) * 20
        return _Output(logits=logits, cache=cache)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    codes=st.sets(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=40),
    top_k=st.integers(1, 6),
    extra_beams=st.integers(0, 4),
    eos_in_score=st.booleans(),
)
def test_random_logits_never_yield_an_invalid_code(seed, codes, top_k, extra_beams, eos_in_score) -> None:
    vocab_size, eos_id = 40, 2
    sequences = {f"t{i}": [10 + a, 16 + b, 22 + c] for i, (a, b, c) in enumerate(sorted(codes))}
    trie = build_trie(sequences, eos_id=eos_id)
    model = _RandomLM(vocab_size, seed)
    config = DecodeConfig(top_k=top_k, num_beams=top_k + extra_beams, eos_in_score=eos_in_score)
    results = constrained_beam_search(model, [0, 1, 3], trie, config)
    assert len(results) == min(top_k, len(sequences))
    tools = [t for t, _ in results]
    assert len(set(tools)) == len(tools)
    assert all(0 <= t < len(sequences) for t in tools)
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) and s <= 0 for s in scores)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_trie_processor_makes_sampling_valid(setup, seed: int) -> None:
    tokenizer, model, _codes, trie = setup
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": "bob"}])
    torch.manual_seed(seed)
    out = model.generate(
        torch.tensor([prompt]),
        do_sample=True,
        temperature=5.0,
        max_new_tokens=4,
        num_return_sequences=3,
        logits_processor=[TrieLogitsProcessor(trie, len(prompt))],
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    for seq in out[:, len(prompt) :].tolist():
        assert tuple(seq[:3]) in set(trie.sequences) and seq[3] == trie.eos_id


# ---- save -> register -> `toolweaver retrieve` ------------------------------------------------


def test_cli_retrieve_after_save_load_gives_same_top_k(setup, tmp_path) -> None:
    pytest.importorskip("deltalake")
    import json as _json

    import pyarrow as pa
    from typer.testing import CliRunner

    from flows.cli import app
    from storage import Store
    from storage.schemas import SCHEMAS
    from toolweaver.align.models import write_checkpoint_meta
    from toolweaver.align.vocab import parse_code

    tokenizer, model, codes, trie = setup
    want = retrieve(model, tokenizer, "send an email to bob", trie, DecodeConfig(top_k=3))

    store = Store(tmp_path / "store")
    rows = [{"tool_id": t, "levels": list(parse_code(c)), "code": c, "codes_version": "v1"} for t, c in codes.items()]
    codes_ref = store.write("codes", pa.Table.from_pylist(rows, schema=SCHEMAS["codes"]))
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = {"stage": "retrieval", "codes_version": codes_ref.version, "base_model": "tiny", "step": 1}
    write_checkpoint_meta(folder, {**meta, "mode": "full", "vocab_size": len(tokenizer)})
    store.register_checkpoint("llm", folder, meta=meta)

    result = CliRunner().invoke(
        app,
        [
            "retrieve",
            "send an email to bob",
            "--top-k",
            "3",
            "--store",
            str(store.root),
            "--format",
            "json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    got = _json.loads(result.stdout)
    assert [r["tool_id"] for r in got] == [r.tool_id for r in want]
    assert [r["code"] for r in got] == [r.code for r in want]
    for row, ref in zip(got, want, strict=False):
        assert row["score"] == pytest.approx(ref.score, abs=1e-4)

    missing = CliRunner().invoke(app, ["retrieve", "x", "--store", str(store.root), "--checkpoint", "nope"])
    assert missing.exit_code != 0 and "nope" in missing.output

    # codes_version may also name the `codes_version` column value instead of a table version.
    from flows.cli_align import _codes_for

    assert _codes_for(store, {"codes_version": "v1"}) == codes
    with pytest.raises(KeyError, match="v2"):
        _codes_for(store, {"codes_version": "v2"})
