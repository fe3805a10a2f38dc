"""Fine-tuning: collation masks, loss parity, accumulation, frozen base rows, memorisation,
checkpoint round trips (tiny Llama built in code, 50 tools)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from toolweaver.align.collate import IGNORE_INDEX, collate, encode_all, encode_conversation
from toolweaver.align.decode import DecodeConfig, constrained_beam_search, prompt_ids, trie_for_codes
from toolweaver.align.models import load_checkpoint, read_checkpoint_meta
from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
from toolweaver.align.train import (
    TrainConfig,
    _optimizer_from_files,
    _optimizer_to_files,
    collate_left,
    epoch_batches,
    lr_at,
    make_optimizer,
    microbatch_loss_sum,
    prepare_model,
    read_trainer_state,
    step_batches,
    train,
    train_step,
)
from toolweaver.align.vocab import VocabConfig, add_code_tokens, format_code

N_TOOLS = 50
LEVELS, K = 2, 8
# Reaches 100% exact match on 50 tools in 300 steps (~8 s on one free CPU core).
MEMORIZE = {
    "lr": 5e-3,
    "epochs": 60,
    "batch_size": 10,
    "schedule": "constant",
    "lora_r": 8,
    "lora_alpha": 32,
    "max_grad_norm": None,
    "device": "cpu",
}


@dataclass
class Tiny:
    tokenizer: object
    model: torch.nn.Module
    codes: dict[str, str]  # tool_id -> code
    docs: dict[str, str]  # tool_id -> doc text
    new_ids: list[int]
    base_vocab: int

    def conversations(self) -> list[list[dict]]:
        return [
            [
                {"role": "user", "content": self.docs[t], "loss": False},
                {"role": "assistant", "content": c, "loss": True},
            ]
            for t, c in self.codes.items()
        ]


def tiny_base(vocab_size: int, *, tied: bool, seed: int, init_std: float) -> torch.nn.Module:
    """`tiny_llama` with its matrices scaled to std `init_std`. At HF's default 0.02 a 64-wide
    random net attends almost uniformly, so LoRA (which cannot grow the embeddings) has to
    learn attention from scratch; at 0.2 it behaves more like a trained net."""
    model = tiny_llama(vocab_size, hidden_size=64, tie_word_embeddings=tied, seed=seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 2:
                parameter.mul_(init_std / 0.02)
    return model


def tiny_setup(
    *, tied: bool = False, n_tools: int = N_TOOLS, seed: int = 0, doc_words: int = 8, init_std: float = 0.2
) -> Tiny:
    """50 tools with random-word docs, codes `<a_i><b_j>`, a tiny Llama with the code vocabulary."""
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(200)]
    docs = {
        f"tool{i}": f"Tool Name: tool{i} . Description: {' '.join(rng.sample(words, doc_words))}"
        for i in range(n_tools)
    }
    codes = {t: format_code((i // K, i % K)) for i, t in enumerate(docs)}
    tokenizer = tiny_tokenizer(docs.values())
    model = tiny_base(len(tokenizer), tied=tied, seed=seed, init_std=init_std)
    base_vocab = len(tokenizer)
    vocab = add_code_tokens(tokenizer, model, n_levels=LEVELS, codebook_size=K, config=VocabConfig(init="random"))
    new_ids = [i for ids in vocab.level_ids for i in ids] + [vocab.finish_id]
    return Tiny(tokenizer, model, codes, docs, new_ids, base_vocab)


def train_tiny(tiny: Tiny, out_dir: Path, **overrides) -> tuple[torch.nn.Module, object]:
    config = TrainConfig(**{**MEMORIZE, **overrides})
    model = prepare_model(tiny.model, tiny.new_ids, config)
    examples = encode_all(tiny.tokenizer, tiny.conversations(), max_length=64)
    result = train(
        model,
        tiny.tokenizer,
        examples,
        config,
        device=torch.device("cpu"),
        out_dir=out_dir,
        meta={"base_model": "tiny"},
    )
    return model, result


# --------------------------------------------------------------------------- collation


def test_labels_cover_only_loss_messages_and_end_of_turn() -> None:
    tiny = tiny_setup(n_tools=3)
    conv = [
        {"role": "system", "content": "be brief", "loss": False},
        {"role": "user", "content": tiny.docs["tool1"], "loss": False},
        {"role": "assistant", "content": tiny.codes["tool1"], "loss": True},
        {"role": "user", "content": "again", "loss": False},
        {"role": "assistant", "content": tiny.codes["tool2"], "loss": True},
    ]
    encoded = encode_conversation(tiny.tokenizer, conv, max_length=256)
    learned = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=False) if label != IGNORE_INDEX]
    assert tiny.tokenizer.convert_ids_to_tokens(learned) == ["<a_0>", "<b_1>", "</s>", "<a_0>", "<b_2>", "</s>"]
    # The labelled ids are the input ids themselves (next-token shift happens in the loss).
    assert all(label in (IGNORE_INDEX, t) for t, label in zip(encoded.input_ids, encoded.labels, strict=False))
    # Token-by-message tokenisation equals tokenising the whole rendered conversation here.
    whole = tiny.tokenizer.apply_chat_template([{k: m[k] for k in ("role", "content")} for m in conv], tokenize=False)
    assert list(encoded.input_ids) == tiny.tokenizer(whole, add_special_tokens=False)["input_ids"]
    # The inference prompt is exactly the training prefix before the first learned token.
    first = next(i for i, label in enumerate(encoded.labels) if label != IGNORE_INDEX)
    assert prompt_ids(tiny.tokenizer, conv[:2]) == list(encoded.input_ids[:first])


def test_cut_keeps_the_targets_and_padding_is_masked() -> None:
    tiny = tiny_setup(n_tools=3)
    conv = tiny.conversations()[0]
    full = encode_conversation(tiny.tokenizer, conv, max_length=256)
    cut = encode_conversation(tiny.tokenizer, conv, max_length=8)
    assert len(cut) == 8 and cut.labels == full.labels[-8:]
    with pytest.raises(ValueError, match="no message with loss"):
        encode_conversation(tiny.tokenizer, [{"role": "user", "content": "x", "loss": False}], max_length=8)
    batch = collate([full, cut], pad_id=0)
    assert batch["input_ids"].shape == (2, len(full))
    assert (batch["labels"][1, 8:] == IGNORE_INDEX).all() and (batch["attention_mask"][1, 8:] == 0).all()
    left = collate_left([full, cut], pad_id=0)
    assert (left["labels"][1, : len(full) - 8] == IGNORE_INDEX).all()
    assert left["position_ids"][1, -8:].tolist() == list(range(8))


# --------------------------------------------------------------------------- step


def test_loss_matches_transformers_on_unpadded_examples() -> None:
    """Left padding + position ids + logits_to_keep give HF's own per-example loss."""
    tiny = tiny_setup(n_tools=4)
    examples = encode_all(tiny.tokenizer, tiny.conversations(), max_length=64)
    examples[1] = encode_conversation(tiny.tokenizer, tiny.conversations()[1], max_length=12)  # a shorter row
    model = tiny.model.float()
    batch = collate_left(examples, pad_id=tiny.tokenizer.pad_token_id)
    with torch.no_grad():
        ours = microbatch_loss_sum(model, batch)
        reference = 0.0
        for e in examples:
            out = model(input_ids=torch.tensor([e.input_ids]), labels=torch.tensor([e.labels]))
            reference += out.loss.item() * (e.n_loss_tokens - (e.labels[0] != IGNORE_INDEX))
    assert ours.item() == pytest.approx(reference, rel=1e-5)


def test_gradient_accumulation_equals_one_large_batch() -> None:
    tiny = tiny_setup(n_tools=8)
    examples = encode_all(tiny.tokenizer, tiny.conversations(), max_length=64)
    results = []
    for micro in ([examples], [examples[:3], examples[3:]]):
        model = tiny_setup(n_tools=8).model
        config = TrainConfig(mode="full", device="cpu", lr=1e-2)
        model = prepare_model(model, [], config)
        # SGD: the update is proportional to the gradient (Adam would amplify float noise on ~0 grads).
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
        batches = [collate_left(m, pad_id=0) for m in micro]
        loss, _ = train_step(
            model, batches, optimizer, lr=1e-2, max_grad_norm=1.0, autocast=torch.autocast("cpu", enabled=False)
        )
        results.append((loss, torch.cat([p.detach().flatten() for p in model.parameters()])))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


def test_lr_schedule_known_values() -> None:
    config = TrainConfig(lr=1.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.0, max_steps=12)
    assert [lr_at(s, 12, config) for s in (1, 2)] == [0.5, 1.0]
    assert lr_at(7, 12, config) == pytest.approx(0.5)
    assert lr_at(12, 12, config) == pytest.approx(0.0, abs=1e-12)
    linear = TrainConfig(lr=1.0, schedule="linear", min_lr_ratio=0.1, max_steps=11)
    assert lr_at(11, 11, linear) == pytest.approx(0.1)


def test_data_order_is_a_permutation_and_deterministic() -> None:
    lengths = [random.Random(1).randint(5, 50) for _ in range(103)]
    config = TrainConfig(batch_size=4, grad_accum=3, seed=7)
    for epoch in (0, 1):
        batches = epoch_batches(lengths, config, epoch)
        assert sorted(i for b in batches for i in b) == list(range(103))
        assert batches == epoch_batches(lengths, config, epoch)
    assert epoch_batches(lengths, config, 0) != epoch_batches(lengths, config, 1)
    # 26 batches, 3 per step -> 9 steps per epoch; step 10 is the first of epoch 1.
    epoch, first = step_batches(lengths, config, 10)
    assert epoch == 1 and first == epoch_batches(lengths, config, 1)[:3]


def test_config_rejects_contradictions() -> None:
    with pytest.raises(ValueError, match="lora_targets"):
        TrainConfig(lora_targets=())
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(max_steps=5, warmup_steps=5)
    with pytest.raises(ValueError, match="train_new_tokens"):
        TrainConfig(mode="full", train_new_tokens=False)
    with pytest.raises(ValueError):
        TrainConfig(stage="pretraining")
    with pytest.raises(ValueError, match="bf16"):
        from toolweaver.align.train import autocast_for

        autocast_for(TrainConfig(precision="bf16"), torch.device("cpu"))


# --------------------------------------------------------------------------- LoRA + new rows


@pytest.mark.parametrize("tied", [True, False])
def test_lora_leaves_base_vocabulary_rows_bit_identical(tied: bool, tmp_path: Path) -> None:
    tiny = tiny_setup(tied=tied, n_tools=10)
    before_in = tiny.model.get_input_embeddings().weight.detach().clone()
    before_out = tiny.model.get_output_embeddings().weight.detach().clone()
    model, _ = train_tiny(tiny, tmp_path, epochs=3, lr=5e-2)
    base = model.get_base_model()
    effective_in = model.get_input_embeddings()(torch.arange(before_in.shape[0])).detach()
    n = tiny.base_vocab
    assert torch.equal(effective_in[:n], before_in[:n])
    assert not torch.equal(effective_in[tiny.new_ids], before_in[tiny.new_ids]), "new rows did not train"
    # The stored base matrices are untouched too, including the (tied or separate) output head.
    head = base.get_output_embeddings()
    head_weight = head.original_module.weight if hasattr(head, "original_module") else head.weight
    assert torch.equal(head_weight[:n], before_out[:n])
    hidden = torch.randn(3, before_in.shape[1])
    with torch.no_grad():
        logits = head(hidden)
    torch.testing.assert_close(logits[:, :n], hidden @ before_out[:n].T, rtol=0, atol=1e-6)


def test_full_mode_trains_every_weight(tmp_path: Path) -> None:
    tiny = tiny_setup(n_tools=10)
    before = tiny.model.get_input_embeddings().weight.detach().clone()
    model, _ = train_tiny(tiny, tmp_path, mode="full", epochs=2, lr=1e-2)
    assert not torch.equal(model.get_input_embeddings().weight[: tiny.base_vocab], before[: tiny.base_vocab])


# --------------------------------------------------------------------------- memorisation + checkpoints


@pytest.fixture(scope="module")
def memorized(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("memorized")
    tiny = tiny_setup()
    base_dir = root / "base"
    tiny_base(tiny.base_vocab, tied=False, seed=0, init_std=0.2).save_pretrained(base_dir)  # before new tokens
    config = TrainConfig(**MEMORIZE, save_every=100, keep_last=2)
    model = prepare_model(tiny.model, tiny.new_ids, config)
    examples = encode_all(tiny.tokenizer, tiny.conversations(), max_length=64)
    result = train(
        model,
        tiny.tokenizer,
        examples,
        config,
        device=torch.device("cpu"),
        out_dir=root / "ckpt",
        meta={"base_model": str(base_dir), "codes_version": "v-test"},
    )
    return tiny, model, result, root


def _exact(model, tiny: Tiny) -> tuple[float, float]:
    trie = trie_for_codes(tiny.tokenizer, tiny.codes)
    constrained = greedy = 0
    for tool_id, code in tiny.codes.items():
        prompt = prompt_ids(tiny.tokenizer, [{"role": "user", "content": tiny.docs[tool_id]}])
        (best, _), *_ = constrained_beam_search(model, prompt, trie, DecodeConfig(top_k=1))
        constrained += trie.tool_ids[best] == tool_id
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=LEVELS, do_sample=False, pad_token_id=0)
        greedy += "".join(tiny.tokenizer.convert_ids_to_tokens(out[0, len(prompt) :].tolist())) == code
    return constrained / len(tiny.codes), greedy / len(tiny.codes)


def test_memorization_reaches_exact_match_on_50_tools(memorized) -> None:
    tiny, model, result, _ = memorized
    assert result.steps == 300
    assert _exact(model, tiny) == (1.0, 1.0)


def test_checkpoints_retention_and_contents(memorized) -> None:
    _, _, result, root = memorized
    kept = sorted(p.name for p in (root / "ckpt").iterdir())
    assert kept == ["step-000200", "step-000300"]  # saved at 100, 200, 300; keep_last=2
    final = root / "ckpt" / "step-000300"
    assert result.final_checkpoint == final
    meta = read_checkpoint_meta(final)
    assert (
        meta["mode"] == "lora"
        and meta["stage"] == "memorization"
        and meta["final"]
        and meta["codes_version"] == "v-test"
    )
    assert read_trainer_state(final)["step"] == 300
    names = {p.name for p in final.iterdir()}
    assert {
        "adapter_model.safetensors",
        "optimizer.safetensors",
        "optimizer.json",
        "rng.safetensors",
        "tokenizer.json",
    } <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))], "nothing may be pickled"


def test_save_load_gives_the_same_top_k(memorized) -> None:
    tiny, model, result, _ = memorized
    loaded, tokenizer = load_checkpoint(result.final_checkpoint)
    assert len(tokenizer) == len(tiny.tokenizer)
    trie = trie_for_codes(tokenizer, tiny.codes)
    for tool_id in list(tiny.codes)[:10]:
        prompt = prompt_ids(tokenizer, [{"role": "user", "content": tiny.docs[tool_id]}])
        ours = constrained_beam_search(model, prompt, trie, DecodeConfig(top_k=5))
        theirs = constrained_beam_search(loaded, prompt, trie, DecodeConfig(top_k=5))
        assert [t for t, _ in ours] == [t for t, _ in theirs]
        assert [s for _, s in ours] == pytest.approx([s for _, s in theirs], abs=1e-5)


def test_optimizer_state_round_trips_without_pickle(tmp_path: Path) -> None:
    tiny = tiny_setup(n_tools=5)
    config = TrainConfig(device="cpu", lr=1e-2)
    model = prepare_model(tiny.model, tiny.new_ids, config)
    optimizer = make_optimizer(model, config)
    batch = collate_left(encode_all(tiny.tokenizer, tiny.conversations(), max_length=64), pad_id=0)
    train_step(model, [batch], optimizer, lr=1e-2, max_grad_norm=1.0, autocast=torch.autocast("cpu", enabled=False))
    _optimizer_to_files(optimizer, tmp_path)
    fresh = make_optimizer(model, config)
    _optimizer_from_files(fresh, tmp_path)
    a, b = optimizer.state_dict(), fresh.state_dict()
    assert json.dumps(a["param_groups"]) == json.dumps(b["param_groups"])
    for pid, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["state"][pid][key]), (pid, key)
