"""Vocabulary and latency reports; the LLM adapter on a tiny checkpoint built in code."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from toolweaver.eval.costs import count_virtual_tokens, measure_latency, percentile, vocabulary_report


def test_vocabulary_report_known_answer() -> None:
    codes = [(0, 1), (0, 2), (3, 1)]
    report = vocabulary_report(codes, n_levels=2, codebook_size=4)
    assert report.atomic_tokens_added == 4  # 3 tools + Finish
    assert report.code_tokens_added == 9  # 2 x 4 + Finish
    assert report.code_tokens_used == 4  # a_0, a_3, b_1, b_2
    with pytest.raises(ValueError, match="do not fit"):
        vocabulary_report([(0, 4)], n_levels=2, codebook_size=4)


def test_toolgen_reference_vocabulary(shared_data: Path) -> None:
    """ToolGen adds 46,985 tokens: 46,984 tools plus <<Finish>>."""
    assert count_virtual_tokens(shared_data / "toolgen" / "virtual_tokens.txt") == 46_985


def test_percentile_and_latency_counts_only_timed_calls() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0
    calls: list[object] = []
    report = measure_latency("fake", calls.append, range(7), torch.device("cpu"), warmup=2)
    assert calls == list(range(7)) and report.n_queries == 5
    assert 0 <= report.mean_ms <= report.p95_ms + 1e-9 and report.peak_memory_bytes > 0


def test_generative_adapter_ranks_distinct_candidates_only(tmp_path: Path) -> None:
    from toolweaver.align.models import write_checkpoint_meta
    from toolweaver.align.tiny import tiny_llama, tiny_tokenizer
    from toolweaver.align.vocab import VocabConfig, add_code_tokens
    from toolweaver.eval.llm import GenerativeMethod

    tokenizer = tiny_tokenizer(["find the weather", "cook dinner"])
    model = tiny_llama(len(tokenizer))
    add_code_tokens(tokenizer, model, n_levels=2, codebook_size=3, config=VocabConfig(seed=1))
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_checkpoint_meta(
        folder, {"mode": "full", "base_model": "tiny", "vocab_size": len(tokenizer), "codes_version": "v1"}
    )

    codes = {f"T{i}&&api": f"<a_{i // 3}><b_{i % 3}>" for i in range(9)}
    method = GenerativeMethod("toolweaver", folder, codes, num_beams=5, device="cpu")
    method.fit([], {}, dict.fromkeys(codes, "doc"))
    candidates = ["T0&&api", "T4&&api", "T5&&api", "T8&&api"]
    ranked = method.rank(["find the weather", "cook dinner"], candidates, 3)
    for row in ranked:
        tools = [t for t, _ in row]
        assert len(tools) == 3 == len(set(tools)) and set(tools) <= set(candidates)
        scores = [s for _, s in row]
        assert scores == sorted(scores, reverse=True) and all(s <= 0 for s in scores)  # log-probabilities


def test_bench_decode_reports_all_variants(tmp_path: Path) -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "bench_decode", Path(__file__).resolve().parents[2] / "bench" / "decode.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "decode.json"
    rows = bench.main(
        ["--tools", "50", "--levels", "2", "--codebook", "8", "--queries", "3", "--device", "cpu", "--json", str(out)]
    )
    assert [r["name"] for r in rows] == ["codes", "codes-unconstrained", "atomic", "atomic-unconstrained"]
    assert rows[0]["tokens_added"] == 2 * 8 + 1 and rows[2]["tokens_added"] == 50 + 1
    assert rows[0]["ratio_to_unconstrained"] > 0 and all(r["n_queries"] == 3 for r in rows)
    assert json.loads(out.read_text())["rows"] == rows
    codes = bench.random_codes(50, 2, 8, seed=0)
    assert len(set(codes)) == 50 and codes == bench.random_codes(50, 2, 8, seed=0)
