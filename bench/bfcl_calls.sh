#!/usr/bin/env bash
# BFCL call accuracy in one command (issue 13): ingest BFCL (one split by id: half train,
# half held out), codes, datasets, the same-budget `toolweaver` / `atomic` pair trained
# memorization -> retrieval -> trajectory on the train half, then the four methods of
# `toolweaver evaluate --task calls` on a seeded held-out subset: base (given functions),
# bm25 (top-5 in context, catalog), atomic and toolweaver (catalog, by generating codes).
#
#   bench/bfcl_calls.sh                            # CPU size: 100 questions per category, 50 conversations
#   PER_CATEGORY=0 CONVERSATIONS=0 DEVICE=cuda bench/bfcl_calls.sh     # the whole held-out half (GPU)
#   METHODS=base,bm25 bench/bfcl_calls.sh          # the in-context baselines only (no training)
#
# Training resumes from its checkpoints when interrupted (re-run the script: cached stages
# are skipped by the finetune stage's own resume). Wall times go to stderr, the rows to
# $OUT/calls.json, the table to stdout.
set -euo pipefail

STORE=${STORE:-artifacts/bfcl}
OUT=${OUT:-$STORE/results}
METHODS=${METHODS:-base,bm25,atomic,toolweaver}
PER_CATEGORY=${PER_CATEGORY:-100}
CONVERSATIONS=${CONVERSATIONS:-50}
TRAJ_STEPS=${TRAJ_STEPS:-400}

source "$(dirname "$0")/_llm_pair.sh"

size_opts=()
[[ "$PER_CATEGORY" != 0 ]] && size_opts+=(--per-category "$PER_CATEGORY")
[[ "$CONVERSATIONS" != 0 ]] && size_opts+=(--conversations "$CONVERSATIONS")

train_agent() {  # train_agent TOKENS INIT -> prints the trajectory checkpoint id
  local retrieval
  retrieval=$(train_pair_member "$1" "$2")
  "$TW" finetune "${FINETUNE_COMMON[@]}" --tokens "$1" --stages trajectory --init "$retrieval" \
      --max-steps "$TRAJ_STEPS" | tail -n 1 | cut -f 2
}

mkdir -p "$OUT"
checkpoints=()
if [[ "$METHODS" == *toolweaver* || "$METHODS" == *atomic* ]]; then
  step ingest "$TW" ingest --store "$STORE" --source bfcl >&2
  step tokenize "$TW" tokenize --store "$STORE" >&2
  step datasets "$TW" datasets --store "$STORE" >&2
  [[ "$METHODS" == *toolweaver* ]] && checkpoints+=(--checkpoint "toolweaver=$(train_timed toolweaver train_agent codes random)")
  [[ "$METHODS" == *atomic* ]] && checkpoints+=(--checkpoint "atomic=$(train_timed atomic train_agent atomic random)")
fi
step evaluate "$TW" evaluate --task calls --store "$STORE" --methods "$METHODS" --base-model "$MODEL" \
    --device "$DEVICE" "${size_opts[@]}" "${checkpoints[@]}" --format json > "$OUT/calls.json"
"$TW" sql --store "$STORE" "SELECT dataset, method, setting, metric, round(value, 4) AS value, n_queries
    FROM eval_results WHERE convention = 'bfcl'
    AND evaluated_at = (SELECT max(evaluated_at) FROM eval_results) ORDER BY dataset, method, metric"
