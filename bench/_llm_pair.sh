# Shared by the LLM recipes in bench/ (sourced, not run): the training budget every LLM of a
# comparison gets, and the helpers that train and time them. Each setting can be overridden
# from the environment; the calling script sets STORE first.

MODEL=${MODEL:-smollm2}
DEVICE=${DEVICE:-auto}
MEM_EPOCHS=${MEM_EPOCHS:-12}  # 12: 97.4% exact match with SmolLM2 on ToolLens (bench/finetune.py); 7 gave 93.8%
RET_QUERIES=${RET_QUERIES:-2000}
BATCH=${BATCH:-8}
LR=${LR:-2e-3}
LORA_R=${LORA_R:-16}
MAX_LENGTH=${MAX_LENGTH:-160}
TW=${TOOLWEAVER:-$(command -v toolweaver || echo .venv/bin/toolweaver)}
FINETUNE_COMMON=(--store "$STORE" --model "$MODEL" --device "$DEVICE" --batch-size "$BATCH" --lr "$LR"
                 --lora-r "$LORA_R" --max-length "$MAX_LENGTH")

step() {  # step NAME CMD...: run, report its wall time on stderr
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo "[$(basename "$0" .sh)] $name: $((SECONDS - start)) s" >&2
}

train_memorization() {  # train_memorization TOKENS INIT -> prints the memorization checkpoint id
  "$TW" finetune "${FINETUNE_COMMON[@]}" --tokens "$1" --stages memorization --epochs "$MEM_EPOCHS" \
      --vocab-init "$2" | tail -n 1 | cut -f 2
}

train_pair_member() {  # train_pair_member TOKENS INIT -> prints the final (retrieval) checkpoint id
  # The same budget for every LLM: MEM_EPOCHS memorization epochs over every tool, then
  # ceil(RET_QUERIES / BATCH) retrieval steps (each training query seen once).
  local memo
  memo=$(train_memorization "$1" "$2")
  "$TW" finetune "${FINETUNE_COMMON[@]}" --tokens "$1" --stages retrieval --init "$memo" \
      --max-steps $(((RET_QUERIES + BATCH - 1) / BATCH)) | tail -n 1 | cut -f 2
}

train_timed() {  # train_timed LABEL TRAIN_FUNCTION TOKENS INIT -> prints the checkpoint id; wall time to stderr
  local label=$1 start=$SECONDS ckpt
  ckpt=$("$2" "$3" "$4")
  echo "[$(basename "$0" .sh)] train $label ($ckpt): $((SECONDS - start)) s" >&2
  echo "$ckpt"
}
