#!/usr/bin/env bash
# Time for SmolLM2 to memorise ToolLens's 464 tools to TARGET exact match, and the retrieval
# NDCG@5 that follows (the pipeline's 1,675 held-out queries), for each lever of issue 16,
# two seeds each, all with the same RQ-VAE codes: one bench/finetune.py run per (variant,
# seed), one markdown row each in $OUT/table.md.
#
#   bench/time_to_memorise.sh                               # every variant, seeds 0 and 1
#   VARIANTS="before codebook" SEEDS=0 bench/time_to_memorise.sh
#
# `before` is the configuration measured so far (random code rows, 12 epochs cap); every
# other variant changes one thing on top of `codebook`. Resumable: a (variant, seed) whose
# JSON exists is skipped, so re-run the same command after an interruption. Alone on the
# 2-core machine a run takes up to ≈ 30 min (12 epochs cap) + ≈ 10 min of held-out decoding.
set -euo pipefail

TOOLLENS=${TOOLLENS:-../shared/data/toollens}
STORE=${STORE:-artifacts/toollens}
OUT=${OUT:-artifacts/time_to_memorise}
VARIANTS=${VARIANTS:-before codebook short-prompt last-15-layers rank-8 constant-lr}
SEEDS=${SEEDS:-0 1}
DEVICE=${DEVICE:-auto}
TARGET=${TARGET:-0.98}
VAL=${VAL:--1}             # held-out queries scored (-1: all 1,675)
TRAIN_QUERIES=${TRAIN_QUERIES:-2000}
PY=${PYTHON:-.venv/bin/python}
TW=${TOOLWEAVER:-$(command -v toolweaver || echo .venv/bin/toolweaver)}

mkdir -p "$OUT"
"$TW" ingest --store "$STORE" --source beir --path "$TOOLLENS" >&2
"$TW" tokenize --store "$STORE" >&2
RQVAE=$(PYTHONPATH=. "$PY" - "$STORE" "$OUT/codes.tsv" <<'PYEOF'
import sys
from storage import Store
store = Store(sys.argv[1])
rows = store.read("codes", columns=["tool_id", "code", "codes_version"]).to_pylist()
with open(sys.argv[2], "w") as f:
    f.writelines(f"{r['tool_id']}\t{r['code']}\n" for r in sorted(rows, key=lambda r: r["tool_id"]))
print(store.checkpoint_path(rows[0]["codes_version"]))
PYEOF
)

options() {  # options VARIANT -> the bench/finetune.py flags of that variant
  local codebook=(--vocab-init codebook --rqvae "$RQVAE")
  case $1 in
    before) echo --vocab-init random ;;
    codebook) echo "${codebook[@]}" ;;
    short-prompt) echo "${codebook[@]}" --max-description-chars 0 ;;
    last-15-layers) echo "${codebook[@]}" --lora-layers 15 ;;
    rank-8) echo "${codebook[@]}" --lora-r 8 ;;
    constant-lr) echo "${codebook[@]}" --mem-schedule constant ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}

for variant in $VARIANTS; do
  for seed in $SEEDS; do
    json="$OUT/$variant-seed$seed.json"
    [ -f "$json" ] && { echo "[time_to_memorise] $json exists: skipped" >&2; continue; }
    lines=1
    [ -f "$OUT/table.md" ] || lines=3  # the first row brings the table header
    # shellcheck disable=SC2046  # options are words by design
    "$PY" bench/finetune.py --codes "$OUT/codes.tsv" --device "$DEVICE" --seed "$seed" --target "$TARGET" \
        --val-queries "$VAL" --train-queries "$TRAIN_QUERIES" --plain-steps 0 --label "$variant, seed $seed" \
        $(options "$variant") --json "$json.tmp" | tail -n "$lines" >> "$OUT/table.md"
    mv "$json.tmp" "$json"
  done
done
cat "$OUT/table.md"
