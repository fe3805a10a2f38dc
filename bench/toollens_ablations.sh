#!/usr/bin/env bash
# ToolWeaver ablations on a ToolLens store that bench/toollens_pair.sh already built, with
# exactly the pair's budget:
#   toolweaver-init-random  code-token rows initialised at random instead of from the codebooks
#   toolweaver-l0           a tokenizer retrained without the co-usage term (lambda = 0)
#
#   STORE=/tmp/pair bench/toollens_ablations.sh
#   STORE=/tmp/pair TOOLWEAVER_CKPT=llm-... bench/toollens_ablations.sh   # also re-evaluate the pair's toolweaver
#
# init-random is trained first: fine-tuning reads the store's current codes and examples, and
# the lambda = 0 retokenisation replaces them (the older codes stay in the codes table's
# history, so `evaluate` still decodes earlier checkpoints with their own codes). Settings
# must match the pair's run (same environment variables, same defaults).
set -euo pipefail

TOOLLENS=${TOOLLENS:-../shared/data/toollens}
STORE=${STORE:-artifacts/toollens}
OUT=${OUT:-$STORE/results}
SETTING=${SETTING:-in-domain}

source "$(dirname "$0")/_llm_pair.sh"

mkdir -p "$OUT"
RANDOM_CKPT=$(train_timed toolweaver-init-random train_pair_member codes random)
step tokenize-l0 "$TW" tokenize --store "$STORE" --retrain --lambda 0 >&2
step datasets-l0 "$TW" datasets --store "$STORE" --stage memorization --stage retrieval >&2
L0_CKPT=$(train_timed toolweaver-l0 train_pair_member codes codebook)
methods=toolweaver-l0,toolweaver-init-random
checkpoints=(--checkpoint "toolweaver-l0=$L0_CKPT" --checkpoint "toolweaver-init-random=$RANDOM_CKPT")
if [[ -n ${TOOLWEAVER_CKPT:-} ]]; then
  methods=toolweaver,$methods
  checkpoints+=(--checkpoint "toolweaver=$TOOLWEAVER_CKPT")
fi
step evaluate "$TW" evaluate --store "$STORE" --beir "$TOOLLENS" --no-ingest --methods "$methods" \
    --setting "$SETTING" "${checkpoints[@]}" \
    --format json --report-dir "$OUT/ablations_report" > "$OUT/ablations.json"
"$TW" sql --store "$STORE" "SELECT method, convention, metric, round(value, 4) AS value, n_queries
    FROM eval_results WHERE setting = '$SETTING' AND metric IN ('ndcg@1', 'ndcg@3', 'ndcg@5', 'recall@5')
    AND evaluated_at = (SELECT max(evaluated_at) FROM eval_results) ORDER BY method, convention, metric"
