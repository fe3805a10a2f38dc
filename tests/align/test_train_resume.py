"""A training run killed with SIGKILL mid-stage resumes from its last checkpoint and ends with
exactly the weights of an uninterrupted run (no optimizer step repeated or skipped)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.align.test_train import tiny_base, tiny_setup
from toolweaver.align.collate import encode_all
from toolweaver.align.models import load_checkpoint
from toolweaver.align.train import TrainConfig, prepare_model, read_trainer_state, train

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = TrainConfig(lr=5e-3, epochs=3, batch_size=4, grad_accum=2, save_every=2, keep_last=2, device="cpu", lora_r=4)
N_TOOLS = 20  # 5 micro-batches -> 3 steps per epoch -> 9 steps
KILL_AFTER_STEP = 5  # the last checkpoint before it is step 4


def _run(out_dir: Path, *, hang_after: int | None = None, resume_from: Path | None = None) -> torch.nn.Module:
    torch.set_num_threads(1)  # same reduction order in the child and the parent
    tiny = tiny_setup(n_tools=N_TOOLS)
    if resume_from is None:
        model = prepare_model(tiny.model, tiny.new_ids, CONFIG)
    else:
        base = tiny_base(tiny.base_vocab, tied=False, seed=0, init_std=0.2)
        model, _ = load_checkpoint(resume_from, base_model=base, trainable=True)
        model = prepare_model(model, [], CONFIG)
    examples = encode_all(tiny.tokenizer, tiny.conversations(), max_length=64)

    def on_step(metrics) -> None:
        print(f"step {metrics.step}", flush=True)
        if metrics.step == hang_after:
            time.sleep(600)  # stands for a long stage; the parent kills us here

    train(
        model,
        tiny.tokenizer,
        examples,
        CONFIG,
        device=torch.device("cpu"),
        out_dir=out_dir,
        meta={"base_model": "tiny"},
        resume_from=resume_from,
        on_step=on_step,
    )
    return model


def _trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_sigkill_mid_stage_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    killed_dir = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen(
        [sys.executable, __file__, str(killed_dir), str(KILL_AFTER_STEP)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
    )
    try:
        for line in child.stdout:  # type: ignore[union-attr]
            if line.strip() == f"step {KILL_AFTER_STEP}":
                break
        else:
            raise AssertionError(f"child ended (rc={child.wait()}) before step {KILL_AFTER_STEP}")
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    kept = sorted(p.name for p in killed_dir.iterdir())
    assert kept == ["step-000002", "step-000004"]  # step 5 never reached a checkpoint
    last = killed_dir / "step-000004"
    assert read_trainer_state(last)["step"] == 4

    resumed = _run(killed_dir, resume_from=last)
    assert read_trainer_state(killed_dir / "step-000009")["step"] == 9
    reference = _run(tmp_path / "uninterrupted")
    ours, theirs = _trainable(resumed), _trainable(reference)
    assert ours.keys() == theirs.keys() and ours
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-6, msg=name)


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    _run(tmp_path)
    tiny = tiny_setup(n_tools=N_TOOLS)
    base = tiny_base(tiny.base_vocab, tied=False, seed=0, init_std=0.2)
    model, tokenizer = load_checkpoint(tmp_path / "step-000008", base_model=base, trainable=True)
    changed = CONFIG.model_copy(update={"lr": 1e-3})
    examples = encode_all(tokenizer, tiny.conversations(), max_length=64)
    with pytest.raises(ValueError, match=r"different \['lr'\]"):
        train(
            model,
            tokenizer,
            examples,
            changed,
            device=torch.device("cpu"),
            out_dir=tmp_path,
            meta={"base_model": "tiny"},
            resume_from=tmp_path / "step-000008",
        )


if __name__ == "__main__":  # the child process of the SIGKILL test
    _run(Path(sys.argv[1]), hang_after=int(sys.argv[2]))
