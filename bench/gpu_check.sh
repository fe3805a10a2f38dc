#!/usr/bin/env bash
# One check for a machine with one CUDA GPU (about 15 minutes, no package registry needed:
# Python with torch, transformers, peft, pydantic and safetensors, plus this repository).
# Each part runs as its own process under its own time limit; a part that fails or runs out
# of time is reported as such and the others still run. Prints one table, with the 47k-catalog
# memorization time PROJECTED from the measured fine-tuning rate.
#
#   bench/gpu_check.sh                 # on the GPU machine
#   bench/gpu_check.sh --dry-run       # tiny scale on CPU (the test suite runs this)
#
# Parts: a SmolLM2-135M-shaped model with random weights (built in code) for bf16 LoRA
# fine-tuning and trie-constrained decoding over 46,892 synthetic codes; bench/tokenize.py
# (RQ-VAE + unique codes) on 46,892 seeded synthetic 384-d embeddings.
set -uo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
OUT=${OUT:-bench/out/gpu_check}
SCALE=full DEVICE=cuda TOOLS=46892 TOKENIZE_ARGS=()
LIMIT_FINETUNE=${LIMIT_FINETUNE:-240} LIMIT_DECODE=${LIMIT_DECODE:-180} LIMIT_TOKENIZE=${LIMIT_TOKENIZE:-300}
if [ "${1:-}" = --dry-run ]; then
  SCALE=tiny DEVICE=cpu TOOLS=400 TOKENIZE_ARGS=(--codebook-size 32 --epochs 2 --warmup-epochs 1)
  LIMIT_FINETUNE=400 LIMIT_DECODE=400 LIMIT_TOKENIZE=400  # generous: a shared CPU
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.rc

part() {  # part NAME LIMIT_S CMD...: run under `timeout`, keep its log and exit code
  local name=$1 limit=$2
  shift 2
  echo "[gpu_check] $name (limit ${limit} s)" >&2
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo $? > "$OUT/$name.rc"
}

part finetune "$LIMIT_FINETUNE" "$PY" bench/gpu_check.py finetune --scale "$SCALE" --device "$DEVICE" --json "$OUT/finetune.json"
part decode "$LIMIT_DECODE" "$PY" bench/gpu_check.py decode --scale "$SCALE" --device "$DEVICE" --json "$OUT/decode.json"
part tokenize "$LIMIT_TOKENIZE" "$PY" bench/tokenize.py --synthetic "$TOOLS" --device "$DEVICE" \
    "${TOKENIZE_ARGS[@]}" --json "$OUT/tokenize.json"
if [ "$DEVICE" = cuda ]; then nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true; fi
echo "$(date -u +%Y-%m-%d) $SCALE $DEVICE"
"$PY" bench/gpu_check.py table --out "$OUT"
