"""Method ids and their configuration: one frozen config, one factory.

``bm25``, ``dense`` and ``toolretriever`` live here; the LLM methods (``atomic``,
``toolweaver``) are adapters over a trained checkpoint (see :mod:`toolweaver.eval.llm`).
Several checkpoints of one LLM method (ablations, seeds) are told apart by a label:
``toolweaver-<label>`` / ``atomic-<label>``, e.g. ``toolweaver-l0`` for a model trained on
codes without the co-usage term. The label is the user's; the library only parses it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from toolweaver.eval.base import RetrievalMethod
from toolweaver.eval.bm25 import BM25Config, BM25Method
from toolweaver.eval.dense import DenseConfig, DenseMethod
from toolweaver.eval.toolretriever import ToolRetrieverConfig, ToolRetrieverMethod

BASELINES: tuple[str, ...] = ("bm25", "dense", "toolretriever")
LLM_METHODS: tuple[str, ...] = ("atomic", "toolweaver")
METHOD_IDS: tuple[str, ...] = BASELINES + LLM_METHODS
_LABELLED = re.compile(rf"^({'|'.join(LLM_METHODS)})-[a-z0-9][a-z0-9-]*$")


def llm_base(method_id: str) -> str | None:
    """The LLM method a method id names (``toolweaver-l0`` -> ``toolweaver``); None for a baseline."""
    if method_id in LLM_METHODS:
        return method_id
    labelled = _LABELLED.match(method_id)
    return labelled.group(1) if labelled else None


class MethodsConfig(BaseModel):
    """Settings of every method; the LLM ones name the checkpoint to evaluate."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bm25: BM25Config = BM25Config()
    dense: DenseConfig = DenseConfig()
    toolretriever: ToolRetrieverConfig = ToolRetrieverConfig()
    checkpoints: dict[str, str] = Field(
        default_factory=dict, description="LLM method id -> checkpoint folder (resolved from the store by tasks/)"
    )
    num_beams: int = Field(5, ge=1, description="beams of the LLM methods' constrained decoding")
    device: str = Field("auto", description="device of the LLM methods")


def parse_method_ids(text: str) -> list[str]:
    """``"bm25,dense"`` -> ``["bm25", "dense"]``; unknown or repeated ids fail loudly."""
    ids = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in ids if m not in BASELINES and llm_base(m) is None]
    if unknown or not ids:
        raise ValueError(
            f"unknown method id(s) {unknown or text!r}; choose from {', '.join(METHOD_IDS)} "
            "(or a labelled LLM method such as toolweaver-l0: lowercase letters, digits, dashes)"
        )
    if len(set(ids)) != len(ids):
        raise ValueError(f"method ids repeated in {text!r}")
    return ids


def build_method(
    method_id: str, config: MethodsConfig, codes: Mapping[str, Mapping[str, str]] | None = None
) -> RetrievalMethod:
    """A fresh, unfitted method object for ``method_id``; ``codes``: LLM method -> tool_id -> code."""
    if method_id == "bm25":
        return BM25Method(config.bm25)
    if method_id == "dense":
        return DenseMethod(config.dense)
    if method_id == "toolretriever":
        return ToolRetrieverMethod(config.toolretriever)
    if llm_base(method_id) is not None:
        from toolweaver.eval.llm import GenerativeMethod  # torch/transformers only when asked for

        checkpoint = config.checkpoints.get(method_id)
        if checkpoint is None:
            raise ValueError(
                f"{method_id}: no trained checkpoint given; train it first (toolweaver finetune [--tokens atomic] ...) "
                "or evaluate only bm25,dense,toolretriever"
            )
        method_codes = (codes or {}).get(method_id)
        if not method_codes:
            raise ValueError(f"{method_id}: no tool codes for checkpoint {checkpoint}; run the codes stage first")
        return GenerativeMethod(method_id, checkpoint, method_codes, num_beams=config.num_beams, device=config.device)
    raise ValueError(f"unknown method id {method_id!r}; choose from {', '.join(METHOD_IDS)}")
