"""Per-token mask cost of two constrained-generation libraries on the same schemas and
tokens: xgrammar (what the agent uses) vs lm-format-enforcer.

    pip install --no-deps --target /tmp/lmfe lm-format-enforcer interegular
    .venv/bin/python bench/constrained_libs.py --model smollm2 --lmfe-path /tmp/lmfe

For the first `--questions` BFCL simple_python questions, the reference arguments
(BFCL's possible answer, as `json.dumps` writes it, in the schema's property order) are
tokenised; each library then computes the allowed-token set before every one of those
tokens (xgrammar: fill the bitmask and accept the token; lm-format-enforcer:
`TokenEnforcer.get_allowed_tokens` on the prefix). No model runs: this is the
constraint's own cost per token. lm-format-enforcer 0.11.3's transformers integration
imports `PreTrainedTokenizerBase` from `transformers.tokenization_utils`, which
transformers 5 no longer has; this script aliases it for the measurement only. Outlines
was not measured (not installed; its transformers-5 support was not checked).
"""

from __future__ import annotations

import os
import sys

# `python bench/x.py` puts bench/ first on sys.path, where bench/tokenize.py would shadow
# the stdlib module: drop that entry.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import statistics
import time
from pathlib import Path

import xgrammar as xgr

from toolweaver.agent.arguments import ArgumentGenerator
from toolweaver.agent.schema import bound_for_generation, to_json_schema
from toolweaver.align.models import load_tokenizer
from toolweaver.eval.calls import load_category, reference_calls
from toolweaver.ingest.bfcl import default_data_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="whose tokenizer: 'smollm2' or a model id/path")
    p.add_argument("--questions", type=int, default=12)
    p.add_argument("--lmfe-path", type=Path, default=None, help="a --target folder holding lm-format-enforcer")
    return p.parse_args(argv)


def reference_ids(tokenizer, question: dict, schema: dict) -> list[int]:
    arguments = next(iter(reference_calls(question["function"], question["ground_truth"])[0].values()))
    ordered = {k: arguments[k] for k in schema.get("properties", {}) if k in arguments}
    return list(tokenizer(json.dumps(ordered), add_special_tokens=False)["input_ids"])


def xgrammar_ms(generator: ArgumentGenerator, schema: dict, ids: list[int]) -> float:
    matcher = generator.matcher(schema)
    bitmask = xgr.allocate_token_bitmask(1, generator.info.vocab_size)
    start = time.perf_counter()
    for token in ids:
        matcher.fill_next_token_bitmask(bitmask)
        matcher.accept_token(token)
    return 1000 * (time.perf_counter() - start) / len(ids)


def main() -> None:
    args = parse_args()
    tokenizer = load_tokenizer(args.model)
    generator = ArgumentGenerator(tokenizer, len(tokenizer))
    questions = load_category(default_data_dir(), "simple_python")[: args.questions]
    schemas = [bound_for_generation(to_json_schema(q["function"][0].get("parameters"))) for q in questions]
    ids = [reference_ids(tokenizer, q, s) for q, s in zip(questions, schemas, strict=True)]
    summary: dict[str, object] = {"model": args.model, "vocab": len(tokenizer), "schemas": len(questions)}
    summary["tokens"] = sum(map(len, ids))
    summary["xgrammar_ms_per_token"] = statistics.mean(
        xgrammar_ms(generator, s, i) for s, i in zip(schemas, ids, strict=True)
    )
    if args.lmfe_path is not None:
        summary.update(lmfe(tokenizer, schemas, ids, args.lmfe_path))
    print(json.dumps(summary, indent=1))


def lmfe(tokenizer, schemas: list[dict], ids: list[list[int]], path: Path) -> dict[str, float]:
    sys.path.insert(0, str(path))
    import transformers
    import transformers.tokenization_utils as moved

    moved.PreTrainedTokenizerBase = transformers.PreTrainedTokenizerBase  # measurement only (see the docstring)
    from lmformatenforcer import JsonSchemaParser, TokenEnforcer
    from lmformatenforcer.integrations.transformers import build_token_enforcer_tokenizer_data

    start = time.perf_counter()
    data = build_token_enforcer_tokenizer_data(tokenizer)
    prep_s = time.perf_counter() - start
    per_token = []
    for schema, tokens in zip(schemas, ids, strict=True):
        enforcer = TokenEnforcer(data, JsonSchemaParser(schema))
        start = time.perf_counter()
        for k in range(len(tokens)):
            enforcer.get_allowed_tokens(tokens[:k])
        per_token.append(1000 * (time.perf_counter() - start) / len(tokens))
    return {"lmfe_tokenizer_prep_s": prep_s, "lmfe_ms_per_token": statistics.mean(per_token)}


if __name__ == "__main__":
    main()
