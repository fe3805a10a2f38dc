#!/usr/bin/env bash
# ToolLens results in one command: ingest, codes, datasets, the same-budget `toolweaver` /
# `atomic` pair, then bm25, dense, toolretriever, atomic and toolweaver evaluated on the
# same held-out validation queries (10% of ToolLens train, seed 0: the split the datasets
# stage and `evaluate` both derive from the query ids).
#
#   bench/toollens_pair.sh                      # full size: SmolLM2, all 464 tools, 2,000 queries
#   STORE=/tmp/s MODEL=/path/to/tiny MEM_EPOCHS=1 RET_QUERIES=16 TOOLRETRIEVER_STEPS=2 bench/toollens_pair.sh
#
# Both LLMs get exactly the same budget: the same `sft_examples` rows (atomic replaces each
# code by its tool's token), memorization of every tool for MEM_EPOCHS epochs, then
# ceil(RET_QUERIES / BATCH) retrieval steps (RET_QUERIES distinct training queries, each seen
# once), the same LoRA rank, learning rate, batch and max length. Every setting below can be
# overridden from the environment. Step timings go to stderr; the evaluation rows (JSON) to
# $OUT/results.json, the markdown report and chart to $OUT/report/.
set -euo pipefail

TOOLLENS=${TOOLLENS:-../shared/data/toollens}
STORE=${STORE:-artifacts/toollens}
OUT=${OUT:-$STORE/results}
CODES_INIT=${CODES_INIT:-codebook}   # init of the code-token rows; `random` = toolweaver-init-random
TOOLRETRIEVER_STEPS=${TOOLRETRIEVER_STEPS:-200}
METHODS=${METHODS:-bm25,dense,toolretriever,atomic,toolweaver}
SETTING=${SETTING:-in-domain}

source "$(dirname "$0")/_llm_pair.sh"

mkdir -p "$OUT"
step ingest "$TW" ingest --store "$STORE" --source beir --path "$TOOLLENS" >&2
step tokenize "$TW" tokenize --store "$STORE" >&2
step datasets "$TW" datasets --store "$STORE" --stage memorization --stage retrieval >&2
TOOLWEAVER_CKPT=$(train_timed toolweaver train_pair_member codes "$CODES_INIT")
ATOMIC_CKPT=$(train_timed atomic train_pair_member atomic random)
step evaluate "$TW" evaluate --store "$STORE" --beir "$TOOLLENS" --no-ingest --methods "$METHODS" \
    --setting "$SETTING" --toolretriever-steps "$TOOLRETRIEVER_STEPS" \
    --checkpoint "toolweaver=$TOOLWEAVER_CKPT" --checkpoint "atomic=$ATOMIC_CKPT" \
    --format json --report-dir "$OUT/report" > "$OUT/results.json"
"$TW" sql --store "$STORE" "SELECT method, convention, metric, round(value, 4) AS value, n_queries
    FROM eval_results WHERE setting = '$SETTING' AND metric IN ('ndcg@1', 'ndcg@3', 'ndcg@5', 'recall@5')
    AND evaluated_at = (SELECT max(evaluated_at) FROM eval_results) ORDER BY method, convention, metric"
