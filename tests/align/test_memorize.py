"""Stop when memorised: the exact-match probe, a known-answer early stop (a tiny model stops at
the first check that reaches the target, with the weights an unstopped run had at that step),
and an exact resume of an interrupted run that then stops at the same step."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from tasks.stages.finetune import FinetuneConfig
from tests.align.test_train import MEMORIZE, tiny_base, tiny_setup
from toolweaver.align.collate import encode_all
from toolweaver.align.memorize import exact_match, greedy_decode, memorization_probe
from toolweaver.align.models import load_checkpoint, read_checkpoint_meta
from toolweaver.align.train import TrainConfig, prepare_model, read_trainer_state, train
from toolweaver.align.vocab import VocabConfig

N_TOOLS = 20  # batch 10 -> 2 steps per epoch
TARGET, EVERY = 0.9, 4


class _Reached(Exception):
    pass


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _config(**overrides) -> TrainConfig:
    return TrainConfig(**{**MEMORIZE, "target": TARGET, "check_every": EVERY, **overrides})


def _run(out_dir: Path, config: TrainConfig, *, check: bool = True, on_step=None, resume_from: Path | None = None):
    torch.set_num_threads(1)
    tiny = tiny_setup(n_tools=N_TOOLS)
    if resume_from is None:
        model = prepare_model(tiny.model, tiny.new_ids, config)
    else:
        base = tiny_base(tiny.base_vocab, tied=False, seed=0, init_std=0.2)
        model, _ = load_checkpoint(resume_from, base_model=base, trainable=True)
        model = prepare_model(model, [], config)
    probe = memorization_probe(tiny.tokenizer, tiny.conversations())
    examples = encode_all(tiny.tokenizer, tiny.conversations(), max_length=64)
    result = train(
        model,
        tiny.tokenizer,
        examples,
        config,
        device=torch.device("cpu"),
        out_dir=out_dir,
        meta={"base_model": "tiny"},
        resume_from=resume_from,
        on_step=on_step(model, probe) if on_step else None,
        check=(lambda m: exact_match(m, probe)) if check else None,
    )
    return model, result, probe


# --------------------------------------------------------------------------- probe


def test_probe_samples_by_seed_independent_of_order_and_keeps_every_tool_in_the_trie() -> None:
    tiny = tiny_setup(n_tools=30)
    conversations = tiny.conversations()
    probe = memorization_probe(tiny.tokenizer, conversations, sample=7, seed=3)
    shuffled = random.Random(0).sample(conversations, len(conversations))
    assert memorization_probe(tiny.tokenizer, shuffled, sample=7, seed=3).answers == probe.answers
    assert memorization_probe(tiny.tokenizer, conversations, sample=7, seed=4).answers != probe.answers
    assert len(probe) == 7 and len(probe.trie.tool_ids) == 30  # candidates: the whole catalog
    assert len(memorization_probe(tiny.tokenizer, conversations, sample=200)) == 30  # all when fewer
    with pytest.raises(ValueError, match="share the answer"):
        memorization_probe(tiny.tokenizer, [conversations[0], conversations[0]])
    with pytest.raises(ValueError, match="does not end with the assistant"):
        memorization_probe(tiny.tokenizer, [conversations[0][:1]])


def test_exact_match_restores_the_training_mode_and_scores_an_untrained_model_low() -> None:
    tiny = tiny_setup(n_tools=N_TOOLS)
    probe = memorization_probe(tiny.tokenizer, tiny.conversations())
    tiny.model.train()
    score = exact_match(tiny.model, probe)
    assert tiny.model.training
    assert 0.0 <= score < 0.5  # random code rows: about chance (1 / 20)


def test_batched_greedy_decode_equals_beam_search_top1(tmp_path: Path) -> None:
    """Parity: left-padded batches of prompts of different lengths decode to exactly the tool
    `constrained_beam_search` ranks first, on a partly trained model (scores far from ties)."""
    from toolweaver.align.decode import DecodeConfig, constrained_beam_search

    tiny = tiny_setup(n_tools=N_TOOLS)
    conversations = tiny.conversations()
    conversations[3][0]["content"] += " with a much longer prompt than the others"
    probe = memorization_probe(tiny.tokenizer, conversations)
    assert len({len(p) for p in probe.prompts}) > 1
    model, _, _ = _run(tmp_path, _config(target=None, max_steps=12), check=False)
    model.eval()
    beam = [constrained_beam_search(model, p, probe.trie, DecodeConfig(top_k=1))[0][0] for p in probe.prompts]
    assert greedy_decode(model, probe.prompts, probe.trie, pad_id=probe.pad_id, batch_size=7) == beam
    assert len(set(beam)) > 3  # not one tool for every prompt: the comparison can fail


# --------------------------------------------------------------------------- early stop


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An unstopped run (no check inside train) scored by hand every EVERY steps until the
    first score >= TARGET: the known answer for the stopping step, score and weights."""
    seen: dict = {}

    def on_step(model, probe):
        def score(metrics) -> None:
            if metrics.step % EVERY == 0:
                value = exact_match(model, probe)
                if value >= TARGET:
                    seen.update(step=metrics.step, score=value, weights=_trainable(model))
                    raise _Reached

        return score

    with pytest.raises(_Reached):
        _run(tmp_path_factory.mktemp("reference"), _config(target=None), check=False, on_step=on_step)
    return seen


def test_memorization_stops_at_the_first_check_that_reaches_the_target(tmp_path: Path, reference: dict) -> None:
    cap = _config().epochs * 2
    model, result, _ = _run(tmp_path, _config())
    assert result.stopped_early and result.steps == reference["step"] < cap
    assert result.exact_match == reference["score"] >= TARGET
    weights = _trainable(model)
    assert all(torch.equal(weights[n], reference["weights"][n]) for n in weights)
    # The stopping checkpoint is the stage's final one and says why.
    assert result.final_checkpoint.name == f"step-{result.steps:06d}"
    meta = read_checkpoint_meta(result.final_checkpoint)
    assert (meta["final"], meta["stopped_early"], meta["exact_match"]) == (True, True, reference["score"])
    assert read_trainer_state(result.final_checkpoint)["final"] is True


def test_an_interrupted_run_resumes_exactly_and_stops_at_the_same_step(tmp_path: Path, reference: dict) -> None:
    config = _config(save_every=2, keep_last=1)
    kill_at = reference["step"] - 1  # the newest checkpoint before the kill is step kill_at - 1

    def crash(model, probe):
        def at(metrics) -> None:
            if metrics.step == kill_at:
                raise KeyboardInterrupt("simulated kill")

        return at

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "run", config, on_step=crash)
    (last,) = sorted((tmp_path / "run").glob("step-*"))
    assert read_trainer_state(last)["step"] == kill_at - 1 and not read_trainer_state(last)["final"]
    model, result, _ = _run(tmp_path / "resumed", config, resume_from=last)
    assert (result.steps, result.exact_match, result.stopped_early) == (reference["step"], reference["score"], True)
    weights = _trainable(model)
    assert all(torch.equal(weights[n], reference["weights"][n]) for n in weights)
    # Resuming from the final checkpoint trains nothing more.
    _, again, _ = _run(tmp_path / "again", config, resume_from=result.final_checkpoint)
    assert (again.steps, again.tokens, again.final_checkpoint) == (reference["step"], 0, result.final_checkpoint)


# --------------------------------------------------------------------------- defaults


def test_finetune_defaults_to_codebook_code_rows_and_random_atomic_rows() -> None:
    assert FinetuneConfig().vocab.init == "codebook"
    assert FinetuneConfig(vocab={}).vocab.init == "codebook"  # what the CLI passes without --vocab-init
    assert FinetuneConfig(vocab=VocabConfig(seed=2)).vocab.init == "codebook"
    assert FinetuneConfig(vocab={"init": "random"}).vocab.init == "random"
    assert FinetuneConfig(tokens="atomic").vocab.init == "random"
    assert FinetuneConfig(tokens="atomic", vocab={"seed": 3}).vocab.init == "random"
    assert FinetuneConfig(tokens="atomic", vocab={"init": "mean"}).vocab.init == "mean"
    with pytest.raises(ValueError, match="needs code levels"):
        FinetuneConfig(tokens="atomic", vocab={"init": "codebook"})
    assert TrainConfig().target == 0.98 and TrainConfig().check_tools == 200


def test_lora_layers_puts_adapters_on_the_last_layers_only() -> None:
    tiny = tiny_setup(n_tools=4)
    model = prepare_model(tiny.model, tiny.new_ids, TrainConfig(lora_layers=1, lora_r=2))
    adapted = {n.split("layers.")[1].split(".")[0] for n, _ in model.named_parameters() if "lora_A" in n}
    assert adapted == {"1"}  # of layers 0 and 1
    with pytest.raises(ValueError, match="has 2 decoder layers"):
        prepare_model(tiny_setup(n_tools=4).model, [], TrainConfig(lora_layers=3))
