#!/usr/bin/env bash
# The "inference engines" section of `onellm bench`, alone: `onellm infer` (HF engine) vs `onellm infer --engine vllm`
# on the same requests, in one run: the "small" preset (random weights, LM head sharpened), N mixed-modality requests
# of the synthetic world (default 128) + 1 text-only, 32 new tokens each, greedy, fp32 on the CPU; the HF side in the
# main environment (.venv), the vLLM side in .venv-vllm (engine core in its own process, vLLM's default; --in-process
# as a third argument runs it in the calling process). Prints samples/s, tokens/s, the ratio and how many answers are
# the same; the JSON goes to OUT_DIR/engines.json.
# Usage: .ci/vllm-bench.sh [N] [OUT_DIR] [--in-process]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-128}"
OUT="${2:-$(mktemp -d "${TMPDIR:-/tmp}/onellm-vllm-bench.XXXXXX")}"
MODE="${3:-}"
mkdir -p "$OUT"
.ci/vllm-env.sh
export DS_ACCELERATOR=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m onellm.vllm.bench engines --preset small --requests "$N" --workdir "$OUT/work" \
  --out "$OUT/engines.json" --vllm-python "$PWD/.venv-vllm/bin/python" ${MODE:+"$MODE"} | tee "$OUT/report.txt"
echo "vllm-bench: results in $OUT"
