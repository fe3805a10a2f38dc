"""The in-context baselines: a base model (no code tokens) given function documents in its
prompt writes a JSON list of calls, under a grammar built from those documents' schemas.

Used for BFCL's standard "given functions" setting (the question's own functions) and
for BM25-in-context in the catalog setting (the top-k retrieved documents). The same
xgrammar argument phase as the agent constrains the output: a list of 1..MAX_CALLS
objects `{"name": <one of the given names>, "arguments": <that function's schema>}`, so
every call names a given function and its arguments validate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from toolweaver.agent.arguments import ArgumentGenerator
from toolweaver.agent.schema import to_json_schema
from toolweaver.align.decode import prompt_ids
from toolweaver.align.models import embedding_rows

MAX_CALLS = 8
SYSTEM = (
    "You are a function-calling assistant. Functions you can call:\n{docs}\n"
    'Answer with a JSON list of calls: [{{"name": FUNCTION_NAME, "arguments": {{...}}}}, ...].'
)


@dataclass(frozen=True)
class InContextCalls:
    calls: list[tuple[str, dict[str, Any]]]  # empty when the budget ran out first
    complete: bool
    seconds: float


def calls_schema(functions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The grammar's schema: a list of calls, each naming one given function."""
    options = [
        {
            "type": "object",
            "properties": {"name": {"const": f["name"]}, "arguments": to_json_schema(f.get("parameters"))},
            "required": ["name", "arguments"],
        }
        for f in functions
    ]
    return {"type": "array", "items": {"anyOf": options}, "minItems": 1, "maxItems": MAX_CALLS}


def docs_text(functions: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(json.dumps(f, ensure_ascii=False) for f in functions)


class InContextCaller:
    """A base causal LM calling functions documented in its prompt."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, max_tokens: int = 1024) -> None:
        self.model, self.tokenizer = model, tokenizer
        vocab_size = embedding_rows(model)  # the logits width (padded vocabularies included)
        self.generator = ArgumentGenerator(tokenizer, vocab_size, max_tokens=max_tokens)

    def call(self, history: Sequence[Mapping[str, str]], functions: Sequence[Mapping[str, Any]]) -> InContextCalls:
        """Calls for the conversation `history` (user/assistant messages) given `functions`."""
        start = time.perf_counter()
        messages = [{"role": "system", "content": SYSTEM.format(docs=docs_text(functions))}, *history]
        out = self.generator.generate(self.model, prompt_ids(self.tokenizer, messages), calls_schema(functions))
        calls = [(c["name"], c["arguments"]) for c in out.arguments] if out.arguments is not None else []
        return InContextCalls(calls, out.complete, time.perf_counter() - start)
