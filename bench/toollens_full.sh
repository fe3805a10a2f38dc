#!/usr/bin/env bash
# ToolLens with all its training queries (the held-out 10% excluded: 15,218 of 16,893), the
# `toolweaver` / `atomic` pair on the same budget, evaluated on the same 1,675 held-out
# queries next to bm25, dense and toolretriever. Memorization stops at TARGET exact match
# (default 0.98) or MEM_EPOCHS; retrieval runs RET_EPOCHS passes over every training query.
#
#   bench/toollens_full.sh                                  # store: artifacts/toollens-full
#   RET_EPOCHS=2 bench/toollens_full.sh                     # a longer retrieval budget
#
# Resumable: stages checkpoint every SAVE_EVERY steps; re-running the same command re-uses
# the finished stages (same inputs and settings) and resumes the interrupted one. Expected
# size on the 2-core CPU (≈ 335 tokens/s, ≈ 60 tokens per retrieval example): one retrieval
# epoch ≈ 15,218 × 60 / 335 ≈ 45 min per LLM; with a GPU, DEVICE=cuda BATCH=32.
set -euo pipefail
export STORE=${STORE:-artifacts/toollens-full}
export RET_QUERIES=${RET_QUERIES:-15218}
export TOOLRETRIEVER_STEPS=${TOOLRETRIEVER_STEPS:-2000}
exec "$(dirname "$0")/toollens_pair.sh"
