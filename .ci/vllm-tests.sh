#!/usr/bin/env bash
# The vLLM tests: OneLLM on vLLM (CPU, fp32) against the HF path, token for token.
#  1. .ci/vllm-env.sh makes/updates .venv-vllm (a no-op when it is up to date);
#  2. the MAIN environment (.venv, made by .ci/run) writes the fixtures: a tiny model directory, the synthetic
#     world, the HF path's greedy answers and token ids (`onellm infer --temperature 0 --dtype fp32`), its lines for
#     a manifest with corrupt inputs and its `onellm eval --benchmark synth` predictions;
#  3. the vLLM environment runs tests/vllm against them (the main suite does not collect tests/vllm): the engine,
#     `onellm infer --engine vllm` (equal answers and tokens, kill / resume, error lines, two data-parallel ranks),
#     `onellm eval --engine vllm`, `onellm serve` (a chat request with an image and an audio file on 127.0.0.1).
# Extra arguments go to pytest. Fails when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
.ci/vllm-env.sh
if [ ! -x .venv/bin/python ]; then
  echo "vllm-tests: the main environment .venv is missing (run .ci/run first)" >&2
  exit 1
fi
export DS_ACCELERATOR=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
fixtures=$(mktemp -d "${TMPDIR:-/tmp}/onellm-vllm-fixtures.XXXXXX")
trap 'rm -rf "$fixtures"' EXIT
.venv/bin/python tests/vllm/make_fixtures.py --out "$fixtures"
export ONELLM_VLLM_FIXTURES="$fixtures" ONELLM_MAIN_PYTHON="$PWD/.venv/bin/python"
export VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
.venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/vllm "$@"
