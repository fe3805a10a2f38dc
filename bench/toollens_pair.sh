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
MODEL=${MODEL:-smollm2}
DEVICE=${DEVICE:-auto}
MEM_EPOCHS=${MEM_EPOCHS:-12}  # 12: 97.4% exact match with SmolLM2 (bench/finetune.py); 7 gave 93.8%
RET_QUERIES=${RET_QUERIES:-2000}
BATCH=${BATCH:-8}
LR=${LR:-2e-3}
LORA_R=${LORA_R:-16}
MAX_LENGTH=${MAX_LENGTH:-160}
CODES_INIT=${CODES_INIT:-codebook}   # init of the code-token rows; `random` = toolweaver-init-random
TOOLRETRIEVER_STEPS=${TOOLRETRIEVER_STEPS:-200}
METHODS=${METHODS:-bm25,dense,toolretriever,atomic,toolweaver}
SETTING=${SETTING:-in-domain}
TW=${TOOLWEAVER:-$(command -v toolweaver || echo .venv/bin/toolweaver)}

step() {  # step NAME CMD...: run, report its wall time on stderr
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "[toollens_pair] $name: $((SECONDS - start)) s" >&2
}

train_pair_member() {  # train_pair_member TOKENS INIT -> prints the final (retrieval) checkpoint id
  local tokens=$1 init=$2 common memo
  common=(--store "$STORE" --model "$MODEL" --device "$DEVICE" --tokens "$tokens" --batch-size "$BATCH"
          --lr "$LR" --lora-r "$LORA_R" --max-length "$MAX_LENGTH")
  memo=$("$TW" finetune "${common[@]}" --stages memorization --epochs "$MEM_EPOCHS" --vocab-init "$init" | tail -n 1 | cut -f 2)
  "$TW" finetune "${common[@]}" --stages retrieval --init "$memo" \
      --max-steps $(((RET_QUERIES + BATCH - 1) / BATCH)) | tail -n 1 | cut -f 2
}

mkdir -p "$OUT"
step ingest "$TW" ingest --store "$STORE" --source beir --path "$TOOLLENS" >&2
step tokenize "$TW" tokenize --store "$STORE" >&2
step datasets "$TW" datasets --store "$STORE" --stage memorization --stage retrieval >&2
start=$SECONDS
TOOLWEAVER_CKPT=$(train_pair_member codes "$CODES_INIT")
echo "[toollens_pair] train toolweaver ($TOOLWEAVER_CKPT): $((SECONDS - start)) s" >&2
start=$SECONDS
ATOMIC_CKPT=$(train_pair_member atomic random)
echo "[toollens_pair] train atomic ($ATOMIC_CKPT): $((SECONDS - start)) s" >&2
step evaluate "$TW" evaluate --store "$STORE" --beir "$TOOLLENS" --no-ingest --methods "$METHODS" \
    --setting "$SETTING" --toolretriever-steps "$TOOLRETRIEVER_STEPS" \
    --checkpoint "toolweaver=$TOOLWEAVER_CKPT" --checkpoint "atomic=$ATOMIC_CKPT" \
    --format json --report-dir "$OUT/report" > "$OUT/results.json"
"$TW" sql --store "$STORE" "SELECT method, convention, metric, round(value, 4) AS value, n_queries
    FROM eval_results WHERE setting = '$SETTING' AND metric IN ('ndcg@1', 'ndcg@3', 'ndcg@5', 'recall@5')
    AND evaluated_at = (SELECT max(evaluated_at) FROM eval_results) ORDER BY method, convention, metric"
