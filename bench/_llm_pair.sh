# Shared by the LLM recipes in bench/ (sourced, not run): the training budget every LLM of a
# comparison gets, and the helpers that train and time them. Each setting can be overridden
# from the environment; the calling script sets STORE first.

MODEL=${MODEL:-smollm2}
DEVICE=${DEVICE:-auto}
MEM_EPOCHS=${MEM_EPOCHS:-12}  # the cap; 12: 97.4% exact match with SmolLM2 on ToolLens (bench/finetune.py)
TARGET=${TARGET:-0.98}        # memorization stops at this exact match (seeded sample of 200 tools); 0: never
RET_QUERIES=${RET_QUERIES:-2000}
RET_EPOCHS=${RET_EPOCHS:-1}
SAVE_EVERY=${SAVE_EVERY:-200}  # checkpoints of long stages: re-running the recipe resumes from the newest
BATCH=${BATCH:-8}
LR=${LR:-2e-3}
LORA_R=${LORA_R:-16}
MAX_LENGTH=${MAX_LENGTH:-160}
TW=${TOOLWEAVER:-$(command -v toolweaver || echo .venv/bin/toolweaver)}
PY=${PYTHON:-$(dirname "$TW")/python}  # the toolweaver command's interpreter, for bench/*.py
FINETUNE_COMMON=(--store "$STORE" --model "$MODEL" --device "$DEVICE" --batch-size "$BATCH" --lr "$LR"
                 --lora-r "$LORA_R" --max-length "$MAX_LENGTH" --save-every "$SAVE_EVERY")

step() {  # step NAME CMD...: run, report its wall time on stderr
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "[$(basename "$0" .sh)] $name: $((SECONDS - start)) s" >&2
}

train_memorization() {  # train_memorization TOKENS INIT -> prints the memorization checkpoint id
  "$TW" finetune "${FINETUNE_COMMON[@]}" --tokens "$1" --stages memorization --epochs "$MEM_EPOCHS" \
      --target "$TARGET" --vocab-init "$2" | tail -n 1 | cut -f 2
}

train_pair_member() {  # train_pair_member TOKENS INIT -> prints the final (retrieval) checkpoint id
  # The same budget for every LLM: memorization of every tool until TARGET exact match or
  # MEM_EPOCHS epochs, then RET_EPOCHS * ceil(RET_QUERIES / BATCH) retrieval steps.
  local memo
  memo=$(train_memorization "$1" "$2")
  "$TW" finetune "${FINETUNE_COMMON[@]}" --tokens "$1" --stages retrieval --init "$memo" \
      --max-steps $((RET_EPOCHS * ((RET_QUERIES + BATCH - 1) / BATCH))) | tail -n 1 | cut -f 2
}

train_timed() {  # train_timed LABEL TRAIN_FUNCTION TOKENS INIT -> prints the checkpoint id; wall time to stderr
  local label=$1 start=$SECONDS ckpt
  ckpt=$("$2" "$3" "$4")
  echo "[$(basename "$0" .sh)] train $label ($ckpt): $((SECONDS - start)) s" >&2
  echo "$ckpt"
}

train_retrieval_from() {  # train_retrieval_from TOKENS MEMORIZATION_CKPT -> prints the retrieval checkpoint id
  "$TW" finetune "${FINETUNE_COMMON[@]}" --tokens "$1" --stages retrieval --init "$2" \
      --max-steps $((RET_EPOCHS * ((RET_QUERIES + BATCH - 1) / BATCH))) | tail -n 1 | cut -f 2
}
