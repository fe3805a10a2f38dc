#!/usr/bin/env bash
# StableToolBench, zero-shot: it has no training queries, so the LLM methods learn its tools
# by memorization alone (every tool's documentation -> its codes / its atomic token) and are
# then evaluated on all its test queries next to bm25, dense and toolretriever (which, with
# no training queries, is the untuned embedder).
#
#   bench/stabletoolbench_zeroshot.sh          # STORE=artifacts/stabletoolbench; SmolLM2; 12 epochs
#   STORE=/tmp/stb MEM_EPOCHS=3 bench/stabletoolbench_zeroshot.sh   # what fits a 2-core CPU session
#
# `toolweaver` and `atomic` get exactly the same budget (MEM_EPOCHS over the same
# `sft_examples` memorization rows, same LoRA rank, learning rate, batch and max length).
set -euo pipefail

STB=${STB:-../shared/data/toolbench/stabletoolbench}
STORE=${STORE:-artifacts/stabletoolbench}
OUT=${OUT:-$STORE/results}
CODES_INIT=${CODES_INIT:-codebook}
METHODS=${METHODS:-bm25,dense,toolretriever,atomic,toolweaver}
DATASET=${DATASET:-stabletoolbench}   # or stabletoolbench/GROUP: one query group

source "$(dirname "$0")/_llm_pair.sh"

mkdir -p "$OUT"
step ingest "$TW" ingest --store "$STORE" --source stabletoolbench --path "$STB" >&2
step tokenize "$TW" tokenize --store "$STORE" >&2
step datasets "$TW" datasets --store "$STORE" --stage memorization >&2
TOOLWEAVER_CKPT=$(train_timed toolweaver train_memorization codes "$CODES_INIT")
ATOMIC_CKPT=$(train_timed atomic train_memorization atomic random)
step evaluate "$TW" evaluate --store "$STORE" --dataset "$DATASET" --methods "$METHODS" \
    --setting in-domain --checkpoint "toolweaver=$TOOLWEAVER_CKPT" --checkpoint "atomic=$ATOMIC_CKPT" \
    --format json --report-dir "$OUT/report" > "$OUT/results.json"
"$TW" sql --store "$STORE" "SELECT method, convention, metric, round(value, 4) AS value, n_queries
    FROM eval_results WHERE metric IN ('ndcg@1', 'ndcg@3', 'ndcg@5', 'recall@5')
    AND evaluated_at = (SELECT max(evaluated_at) FROM eval_results) ORDER BY method, convention, metric"
