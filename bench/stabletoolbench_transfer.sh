#!/usr/bin/env bash
# StableToolBench in a transfer setting: the LLMs memorise the 2,479 StableToolBench tools plus
# ToolLens's 464, are trained for retrieval on ToolLens queries (ToolBench-derived), and are
# evaluated on StableToolBench's 765 test queries in-domain, both NDCG conventions, next to
# bm25, dense and toolretriever; then the memorization-only rows (the memorization
# checkpoints evaluated the same way) and the exact match of both LLMs on every tool.
#
#   bench/stabletoolbench_transfer.sh                       # store: artifacts/stabletoolbench-transfer
#   RET_QUERIES=2000 MEM_EPOCHS=3 bench/stabletoolbench_transfer.sh   # what fits a short CPU session
#
# Resumable like every recipe here (re-run the same command).
set -euo pipefail

STB=${STB:-../shared/data/toolbench/stabletoolbench}
TOOLLENS=${TOOLLENS:-../shared/data/toollens}
STORE=${STORE:-artifacts/stabletoolbench-transfer}
OUT=${OUT:-$STORE/results}
CODES_INIT=${CODES_INIT:-codebook}
METHODS=${METHODS:-bm25,dense,toolretriever,atomic,toolweaver}
RET_QUERIES=${RET_QUERIES:-15218}
DATASET=${DATASET:-stabletoolbench}   # or stabletoolbench/GROUP: one query group
MEM_LIMIT=${MEM_LIMIT:--1}           # tools checked by bench/memorization.py (-1: every memorised tool)

source "$(dirname "$0")/_llm_pair.sh"
HERE=$(dirname "$0")

mkdir -p "$OUT"
step ingest-stb "$TW" ingest --store "$STORE" --source stabletoolbench --path "$STB" >&2
step ingest-toollens "$TW" ingest --store "$STORE" --source beir --path "$TOOLLENS" >&2
step tokenize "$TW" tokenize --store "$STORE" >&2
step datasets "$TW" datasets --store "$STORE" --stage memorization --stage retrieval >&2
TW_MEM=$(train_timed toolweaver-memorization train_memorization codes "$CODES_INIT")
AT_MEM=$(train_timed atomic-memorization train_memorization atomic random)
TW_RET=$(train_timed toolweaver-retrieval train_retrieval_from codes "$TW_MEM")
AT_RET=$(train_timed atomic-retrieval train_retrieval_from atomic "$AT_MEM")
step evaluate "$TW" evaluate --store "$STORE" --dataset "$DATASET" --methods "$METHODS,toolweaver-mem,atomic-mem" \
    --setting in-domain --checkpoint "toolweaver=$TW_RET" --checkpoint "atomic=$AT_RET" \
    --checkpoint "toolweaver-mem=$TW_MEM" --checkpoint "atomic-mem=$AT_MEM" \
    --format json --report-dir "$OUT/report" > "$OUT/results.json"
step memorization "$PY" "$HERE/memorization.py" --store "$STORE" "$TW_MEM" "$AT_MEM" \
    --limit "$MEM_LIMIT" --device "$DEVICE" --json "$OUT/memorization.json"
