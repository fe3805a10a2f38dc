"""Atomic tool tokens (ToolGen): token strings, the code -> token rewrite of the shared
examples, the vocabulary, 1-token tries under beam search, and the `atomic` finetune stage."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.align.test_decode import _brute_force, _RandomLM
from toolweaver.align.atomic import ATOMIC_TOKEN_PATTERN, MAX_BODY_CHARS, atomic_token, atomic_tokens, rewrite_codes
from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, retrieve, trie_for_codes
from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
from toolweaver.align.trie import build_trie
from toolweaver.align.vocab import FINISH_TOKEN, VocabConfig, add_atomic_tokens


def test_atomic_token_known_answers() -> None:
    # A safe id is ToolGen's token verbatim.
    assert atomic_token("QRCheck&&quality_v1_quality_post") == "<<QRCheck&&quality_v1_quality_post>>"
    # Spaces, quotes, '>>' and non-ASCII are replaced; a hash of the raw id keeps it unique.
    assert (
        atomic_token("Thai Drivers License OCR&&Driver's  License")
        == "<<Thai_Drivers_License_OCR&&Driver_s_License~f65daa6d9e>>"
    )
    assert atomic_token("a b&&c") != atomic_token("a_b&&c") == "<<a_b&&c>>"
    assert atomic_token("a b&&c") != atomic_token("a  b&&c")  # same sanitised body, different hash
    long_id = "x" * 300 + "&&y"
    assert len(atomic_token(long_id)) < 120 and atomic_token(long_id) != atomic_token("x" * 300 + "&&z")
    assert atomic_token("café&&>>go<<") == atomic_token("café&&>>go<<")  # a pure function of the id
    assert ATOMIC_TOKEN_PATTERN.fullmatch(atomic_token("café&&>>go<<\n"))
    with pytest.raises(ValueError, match="non-empty"):
        atomic_token("")


def test_atomic_tokens_are_unique_over_the_real_catalogs(shared_data: Path) -> None:
    """ToolGen's 46,984 tools (its virtual_tokens.txt) and the 464 ToolLens tools: one
    distinct, pattern-conforming token each."""
    lines = (shared_data / "toolgen" / "virtual_tokens.txt").read_text(encoding="utf-8").splitlines()
    tool_ids = [line[2:-2] for line in lines if line.strip() and line != FINISH_TOKEN]
    assert len(tool_ids) == 46_984
    tokens = atomic_tokens(tool_ids)
    assert len(set(tokens.values())) == len(set(tool_ids))
    assert all(ATOMIC_TOKEN_PATTERN.fullmatch(t) for t in tokens.values())
    # Short ids of safe characters keep ToolGen's token verbatim (most ids have spaces).
    safe = {t for t in tokens if re.fullmatch(r"[A-Za-z0-9_.&-]+", t) and len(t) <= MAX_BODY_CHARS}
    assert {t for t in tokens if tokens[t] == f"<<{t}>>"} == safe and len(safe) == 12_312


def test_rewrite_codes_replaces_every_code_and_nothing_else() -> None:
    token_of = {"<a_1><b_2>": "<<A&&x>>", "<a_3><b_0>": "<<B&&y>>"}
    retrieval = [
        {"role": "user", "content": "weather <then> mail", "loss": False},
        {"role": "assistant", "content": "<a_1><b_2><a_3><b_0>", "loss": True},
    ]
    assert rewrite_codes(retrieval, token_of, 2) == [retrieval[0], {**retrieval[1], "content": "<<A&&x>><<B&&y>>"}]
    trajectory = [
        {"role": "assistant", "content": "I will look.\n<a_3> <b_0>", "loss": True},
        {"role": "assistant", "content": FINISH_TOKEN, "loss": True},
    ]
    assert [m["content"] for m in rewrite_codes(trajectory, token_of, 2)] == ["I will look.\n<<B&&y>>", FINISH_TOKEN]
    with pytest.raises(KeyError, match="<a_9><b_9>"):
        rewrite_codes([{"role": "assistant", "content": "<a_9><b_9>", "loss": True}], token_of, 2)
    with pytest.raises(ValueError, match="multiple of 2"):
        rewrite_codes([{"role": "assistant", "content": "<a_1><b_2><a_3>", "loss": True}], token_of, 2)


def _atomic_setup(n_tools: int = 20, seed: int = 0):
    tokenizer = tiny_tokenizer(["find the weather in paris", "send an email to bob"])
    model = tiny_llama(len(tokenizer), seed=seed, hidden_size=32)
    tokens = atomic_tokens(f"tool {i}&&api" for i in range(n_tools))
    return tokenizer, model, tokens


def test_atomic_vocabulary_single_ids_and_untouched_base_rows() -> None:
    tokenizer, model, tokens = _atomic_setup()
    base_rows = model.get_input_embeddings().weight[: len(tokenizer)].clone()
    n_base = len(tokenizer)
    ids = add_atomic_tokens(tokenizer, model, sorted(tokens.values()), config=VocabConfig(init="mean"))
    assert ids == list(range(n_base, n_base + len(tokens)))
    assert len(tokenizer) == n_base + len(tokens) + 1  # + <<Finish>>
    assert torch.equal(model.get_input_embeddings().weight[:n_base], base_rows)
    torch.testing.assert_close(model.get_input_embeddings().weight[ids[0]], base_rows.mean(0))
    token = tokens["tool 3&&api"]
    text = tokenizer.apply_chat_template(
        [{"role": "assistant", "content": f"{token}{tokens['tool 4&&api']}"}], tokenize=False
    )
    encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_tokens_to_ids([token, tokens["tool 4&&api"]]) == [i for i in encoded if i >= n_base]
    assert add_atomic_tokens(tokenizer, model, sorted(tokens.values()), config=VocabConfig()) == ids  # idempotent
    with pytest.raises(ValueError, match="codebook"):
        add_atomic_tokens(tokenizer, model, ["<<z>>"], config=VocabConfig(init="codebook"))


def test_one_token_codes_decode_exactly_and_stay_distinct() -> None:
    """A trie of 1-token codes: exhaustive beam search equals brute force, top-k are distinct."""
    tokenizer, model, tokens = _atomic_setup()
    add_atomic_tokens(tokenizer, model, sorted(tokens.values()), config=VocabConfig(random_std=1.0))
    trie = trie_for_codes(tokenizer, tokens)
    assert all(len(seq) == 1 for seq in trie.sequences) and trie.n_nodes == len(tokens) + 1
    prompt = prompt_ids(tokenizer, [{"role": "user", "content": "find the weather"}])
    for eos_in_score in (False, True):
        got = constrained_beam_search(
            model, prompt, trie, DecodeConfig(top_k=5, num_beams=len(tokens), eos_in_score=eos_in_score)
        )
        want = _brute_force(model, prompt, trie, eos_in_score)[:5]
        assert [t for t, _ in got] == [t for t, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-4)
    hits = retrieve(
        model,
        tokenizer,
        "send an email",
        trie.restrict(["tool 1&&api", "tool 2&&api", "tool 7&&api"]),
        DecodeConfig(top_k=5),
    )
    assert sorted(h.tool_id for h in hits) == ["tool 1&&api", "tool 2&&api", "tool 7&&api"]
    assert {h.code for h in hits} == {tokens[h.tool_id] for h in hits}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_tools=st.integers(1, 30), top_k=st.integers(1, 6), eos_in_score=st.booleans())
def test_random_logits_never_yield_an_invalid_one_token_code(seed, n_tools, top_k, eos_in_score) -> None:
    trie = build_trie({f"t{i}": [10 + i] for i in range(n_tools)}, eos_id=2)
    results = constrained_beam_search(
        _RandomLM(48, seed), [0, 1, 3], trie, DecodeConfig(top_k=top_k, eos_in_score=eos_in_score)
    )
    tools = [t for t, _ in results]
    assert len(tools) == min(top_k, n_tools) == len(set(tools)) and all(0 <= t < n_tools for t in tools)
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) and s <= 0 for s in scores)


# --------------------------------------------------------------------------- the finetune stage


def test_atomic_stage_trains_on_the_same_examples_with_one_token_per_tool(tmp_path: Path) -> None:
    from tasks.stages.finetune import FinetuneConfig, finetune, read_codes, read_examples, stage_hash
    from tests.align.test_train_task import N_TOOLS, _config, _store_with_inputs
    from toolweaver.align.models import load_checkpoint, read_checkpoint_meta

    torch.set_num_threads(1)
    store, base = _store_with_inputs(tmp_path)
    config = _config(base, max_steps=2).model_copy(update={"tokens": "atomic"})
    memo, retr = finetune(store, config, run_id="atomic")
    meta = read_checkpoint_meta(store.checkpoint_path(retr.checkpoint_id))
    assert (meta["tokens"], meta["codes_version"], meta["codes_table_version"], meta["vocab_init"]) == (
        "atomic",
        "cv1",
        0,
        "random",
    )
    model, tokenizer = load_checkpoint(store.checkpoint_path(retr.checkpoint_id))
    codes = read_codes(store)
    token_of_code = codes.atomic()
    assert len(token_of_code) == N_TOOLS
    assert len(tokenizer) == model.get_input_embeddings().weight.shape[0]
    assert "<a_0>" not in tokenizer.get_vocab()  # no code tokens: the vocabulary is the only difference
    trie = trie_for_codes(tokenizer, atomic_tokens(codes.tool_ids))
    assert len(trie.tool_ids) == N_TOOLS
    # The stage's examples are the code examples with each code replaced by its tool's token.
    conversations, ref = read_examples(store, "retrieval", "train")
    first = rewrite_codes(conversations[0], token_of_code, codes.n_levels)
    assert first[-1]["content"] in token_of_code.values()
    # The two schemes never share a cached stage; a stage cannot continue the other scheme.
    codes_config = _config(base, max_steps=2)
    assert stage_hash(codes_config, "memorization", [ref], "base:x") != stage_hash(
        config, "memorization", [ref], "base:x"
    )
    with pytest.raises(ValueError, match="atomic tokens"):
        finetune(store, codes_config.model_copy(update={"stages": ("retrieval",)}), init=memo.checkpoint_id)
    with pytest.raises(ValueError, match="codebook"):
        FinetuneConfig(model=base, tokens="atomic", vocab={"init": "codebook"})


def test_smollm2_keeps_every_toollens_atomic_token_whole(shared_data: Path) -> None:
    """The offline default LLM's byte-level BPE tokenizer: each of the 464 ToolLens atomic
    tokens is one id inside a chat-rendered training example."""
    from toolweaver.align.collate import IGNORE_INDEX, encode_conversation
    from toolweaver.align.models import load_tokenizer
    from toolweaver.ingest import beir

    try:
        tokenizer = load_tokenizer()
    except ModuleNotFoundError as err:
        pytest.skip(str(err))
    tool_ids = sorted({t.tool_id for t in beir.parse(shared_data / "toollens").tools})
    tokens = atomic_tokens(tool_ids)
    assert len(tokens) == 464
    tokenizer.add_tokens([*sorted(tokens.values()), FINISH_TOKEN])
    for tool_id in tool_ids[::7]:
        conv = [
            {"role": "user", "content": f"Tool Name: {tool_id}", "loss": False},
            {"role": "assistant", "content": tokens[tool_id], "loss": True},
        ]
        encoded = encode_conversation(tokenizer, conv, max_length=512)
        learned = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE_INDEX]
        assert tokenizer.convert_ids_to_tokens(learned[:1]) == [tokens[tool_id]]
        assert json.dumps(tokenizer.decode(learned[:1])) == json.dumps(tokens[tool_id])
