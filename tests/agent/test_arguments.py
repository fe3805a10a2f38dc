"""The argument phase: every generated argument string parses and validates against the
tool's schema, whatever the model's logits are."""

from __future__ import annotations

import importlib.util
import json
import random

import jsonschema
import pytest
import torch

from tests.agent.helpers import char_tokenizer
from toolweaver.agent.arguments import ArgumentGenerator
from toolweaver.agent.schema import to_json_schema
from toolweaver.align.tiny import tiny_llama
from toolweaver.eval.calls import SINGLE_TURN, load_category
from toolweaver.ingest.bfcl import default_data_dir

needs_bfcl = pytest.mark.skipif(importlib.util.find_spec("bfcl_eval") is None, reason="bfcl-eval is not installed")


class _Output(dict):
    __getattr__ = dict.__getitem__


class _RandomLM(torch.nn.Module):
    """i.i.d. random logits at a large scale: greedy picks an arbitrary token each step,
    usually one the grammar forbids (an adversary for the constraint)."""

    def __init__(self, vocab_size: int, seed: int) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.vocab_size = vocab_size
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, input_ids, use_cache=True, logits_to_keep=0, cache=None, **_):
        logits = torch.randn(input_ids.shape[0], 1, self.vocab_size, generator=self.generator) * 20
        return _Output(logits=logits, cache=cache if cache is not None else object())


def _bfcl_schemas(n: int, seed: int) -> list[dict]:
    """`n` distinct parameter documents of the seven evaluated categories, seeded sample."""
    data = default_data_dir()
    docs = {
        json.dumps(f["parameters"], sort_keys=True)
        for c in SINGLE_TURN
        for q in load_category(data, c)
        for f in q["function"]
    }
    for path in sorted((data / "multi_turn_func_doc").glob("*.json")):
        docs |= {json.dumps(json.loads(line)["parameters"], sort_keys=True) for line in path.read_text().splitlines()}
    return [to_json_schema(json.loads(d)) for d in random.Random(seed).sample(sorted(docs), n)]


@needs_bfcl
def test_200_random_generations_are_all_schema_valid() -> None:
    tokenizer = char_tokenizer()
    generator = ArgumentGenerator(tokenizer, len(tokenizer), max_tokens=4096)
    model = _RandomLM(len(tokenizer), seed=0)
    schemas = _bfcl_schemas(200, seed=0)
    for schema in schemas:
        out = generator.generate(model, [1], schema)
        assert out.complete, out.text[:200]
        jsonschema.validate(out.arguments, schema)
        assert json.loads(out.text) == out.arguments


@needs_bfcl
@pytest.mark.parametrize("n", [pytest.param(2), pytest.param(20, marks=pytest.mark.slow)])
def test_untrained_model_samples_are_schema_valid(n: int) -> None:
    """A real (untrained) transformer, sampled: ~16 ms per token on a shared 2-core CPU,
    so the default run checks 2 documents and the slow tier 20."""
    tokenizer = char_tokenizer()
    model = tiny_llama(len(tokenizer), seed=5)
    generator = ArgumentGenerator(tokenizer, len(tokenizer))
    rng = torch.Generator().manual_seed(0)
    for schema in _bfcl_schemas(n, seed=1):
        out = generator.generate(model, [1, 4], schema, generator=rng, temperature=1.0)
        assert out.complete, out.text[:200]
        jsonschema.validate(out.arguments, schema)


def test_without_the_grammar_random_logits_are_not_json() -> None:
    """The property above is the grammar's doing: the same adversary unconstrained writes
    text that does not parse."""
    tokenizer = char_tokenizer()
    model = _RandomLM(len(tokenizer), seed=0)
    ids = [int(model(torch.tensor([[1]]))["logits"][0, -1].argmax()) for _ in range(20)]
    text = "".join(tokenizer.convert_ids_to_tokens(ids))
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
