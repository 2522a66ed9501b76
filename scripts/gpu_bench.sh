#!/usr/bin/env bash
# The rerank and pipeline benches on a CUDA GPU, writing the same JSON as the CPU runs (issue 21, item 5).
#
#   scripts/gpu_bench.sh [OUT_DIR]          # default results/gpu; about 3-6 minutes on one H200 (estimate: not run yet)
#
# Needs: the project's environment with a CUDA build of torch (python -c "import torch; print(torch.cuda.is_available())"
# prints True), the data under $RAGFIX_DATA (scifact/) and the project's models (models/). Each bench has its own
# time limit so the whole script stays under 10 minutes; a bench that runs out writes nothing (no half file).
# GPU figures are not measured yet: no GPU machine has run this script.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-results/gpu}"
PY="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA="${RAGFIX_DATA:-$PWD/../shared/data}"
mkdir -p "$OUT"
"$PY" - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_bench.sh: torch sees no CUDA device; this script is for a GPU machine (CPU runs: see docs/rerank-precomputed.md)")
print("GPU:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PYEOF
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt" || true

# 1. Rerank, SciFact test, 300 queries, K=100, interleaved: naive (CrossEncoder.predict fp32 batch 32 on the GPU),
#    bf16 (autocast), best (precomputed pruner -> reranker-l6 cuda-bf16 over the kept 20 -> fused order), best_ce.
timeout 300 "$PY" -m bench.cli bench rerank --data "$DATA/scifact" --limit 300 --device cuda \
    --variants naive,bf16,best,best_ce,dense_pruner --best-backend cuda-bf16 --out "$OUT/rerank_scifact.json"
# 2. The same on the untrained-on HotpotQA questions.
timeout 180 "$PY" -m bench.cli bench rerank --data halueval-qa --limit 300 --device cuda \
    --variants naive,best,best_ce --best-backend cuda-bf16 --out "$OUT/rerank_hotpot.json"
# 3. Streaming vs prefix-only prefill overlap, paired TTFT (the LLM on the GPU too: TransformersBackend picks CUDA).
timeout 120 "$PY" -m bench.cli bench pipeline --stream-overlap --limit 40 --history-words 0,500 \
    --best-backend cuda-bf16 --out "$OUT/pipeline_stream.json"
echo "gpu_bench.sh: wrote $OUT/"
