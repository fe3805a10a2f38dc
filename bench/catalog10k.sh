#!/usr/bin/env bash
# The 10,000-tool catalog: the 2,479 StableToolBench tools plus 7,521 ToolEnv2404 tools drawn
# with a fixed seed from those that are not StableToolBench keys (bench/catalog.py), evaluated
# on the 765 StableToolBench queries in the multi-domain setting (every catalog tool is a
# candidate) with bm25, dense, toolretriever and both LLMs. The LLMs memorise every tool;
# with RETRIEVAL=toollens they are also trained for retrieval on ToolLens queries (its 464
# tools join the catalog) and toolretriever tunes on the same queries.
#
#   bench/catalog10k.sh                                    # store: artifacts/catalog10k
#   SIZE=-1 STORE=artifacts/catalog47k bench/catalog10k.sh  # the 47k catalog (every tool)
#   SIZE=5000 bench/catalog10k.sh                           # the largest that fits a 3-hour run
#
# Resumable (re-run the same command). The timings on stderr ("train toolweaver-memorization:
# N s") over the catalog size give the time per tool; docs/results.md projects 47k from them.
set -euo pipefail

STB=${STB:-../shared/data/toolbench/stabletoolbench}
TOOLLENS=${TOOLLENS:-../shared/data/toollens}
SIZE=${SIZE:-10000}
SEED=${SEED:-0}
STORE=${STORE:-artifacts/catalog10k}
OUT=${OUT:-$STORE/results}
CODES_INIT=${CODES_INIT:-codebook}
METHODS=${METHODS:-bm25,dense,toolretriever,atomic,toolweaver}
RETRIEVAL=${RETRIEVAL:-none}   # none | toollens
RET_QUERIES=${RET_QUERIES:-15218}
DATASET=${DATASET:-stabletoolbench}   # or stabletoolbench/GROUP: one query group

source "$(dirname "$0")/_llm_pair.sh"
HERE=$(dirname "$0")

mkdir -p "$OUT"
step catalog "$PY" "$HERE/catalog.py" --size "$SIZE" --seed "$SEED" --out "$STORE/catalog" >&2
step ingest-stb "$TW" ingest --store "$STORE" --source stabletoolbench --path "$STB" >&2
step ingest-toolenv "$TW" ingest --store "$STORE" --source toolbench --path "$STORE/catalog/toolenv" >&2
STAGES=(--stage memorization)
if [ "$RETRIEVAL" = toollens ]; then
  step ingest-toollens "$TW" ingest --store "$STORE" --source beir --path "$TOOLLENS" >&2
  STAGES+=(--stage retrieval)
fi
step tokenize "$TW" tokenize --store "$STORE" >&2
step datasets "$TW" datasets --store "$STORE" "${STAGES[@]}" >&2
TW_CKPT=$(train_timed toolweaver-memorization train_memorization codes "$CODES_INIT")
AT_CKPT=$(train_timed atomic-memorization train_memorization atomic random)
if [ "$RETRIEVAL" = toollens ]; then
  TW_CKPT=$(train_timed toolweaver-retrieval train_retrieval_from codes "$TW_CKPT")
  AT_CKPT=$(train_timed atomic-retrieval train_retrieval_from atomic "$AT_CKPT")
fi
step evaluate "$TW" evaluate --store "$STORE" --dataset "$DATASET" --methods "$METHODS" \
    --setting multi-domain --checkpoint "toolweaver=$TW_CKPT" --checkpoint "atomic=$AT_CKPT" \
    --format json --report-dir "$OUT/report" > "$OUT/results.json"
