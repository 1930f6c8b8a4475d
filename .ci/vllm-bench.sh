#!/usr/bin/env bash
# vLLM vs HF generate, same requests, one run: the "small" preset (random weights), N mixed-modality requests of
# the synthetic world (default 128), 32 new tokens each, greedy, fp32 on the CPU. Prints one JSON row per engine
# (requests/s, tokens/s, speed-up over HF, how many requests got the same token ids as HF).
# Usage: .ci/vllm-bench.sh [N] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-128}"
OUT="${2:-$(mktemp -d "${TMPDIR:-/tmp}/onellm-vllm-bench.XXXXXX")}"
mkdir -p "$OUT"
.ci/vllm-env.sh
export DS_ACCELERATOR=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python tests/vllm/make_fixtures.py --out "$OUT" --preset small --requests "$N" --no-reference-ids \
  --per-modality $(( (N + 23) / 24 ))
.venv/bin/python -m onellm.vllm.bench hf --model "$OUT/model" --manifest "$OUT/requests.jsonl" --out "$OUT/hf.json"
VLLM_CPU_KVCACHE_SPACE=4 .venv-vllm/bin/python -m onellm.vllm.bench vllm --model "$OUT/model" \
  --manifest "$OUT/requests.jsonl" --out "$OUT/vllm.json"
VLLM_CPU_KVCACHE_SPACE=4 .venv-vllm/bin/python -m onellm.vllm.bench vllm --multiprocessing --model "$OUT/model" \
  --manifest "$OUT/requests.jsonl" --out "$OUT/vllm-mp.json"
.venv-vllm/bin/python -m onellm.vllm.bench compare "$OUT/hf.json" "$OUT/vllm.json" "$OUT/vllm-mp.json" | tee "$OUT/report.jsonl"
echo "vllm-bench: results in $OUT"
