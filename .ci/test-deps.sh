#!/usr/bin/env bash
# Everything the test suite needs in the active environment (the project's .venv): the project with its test and
# lmms-eval extras under constraints.txt, lmms-eval itself (without its requirements: every 0.7.x asks for av<16,
# the video loader is tested on av 18; docs/lmms_eval.md), and the web demo's tools (gradio, playwright and Debian's
# chromium, .ci/demo-deps.sh). Cheap when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -q -c constraints.txt -e ".[dev,lmms]"
pip install -q --no-deps -c constraints.txt "lmms-eval==0.7.3"
bash .ci/demo-deps.sh
