#!/usr/bin/env bash
# Install what `onellm demo` and its browser tests need, idempotently and cheaply when already there:
#   * gradio (the web demo) and playwright (the Python package that drives the browser), into the active Python
#     (run it with the project's .venv activated, as .ci/run does);
#   * Debian's chromium (apt-get, only when /usr/bin/chromium is missing). `playwright install` is never run:
#     the tests launch the system Chromium.
#
# gradio 6.x declares pillow<13 while constraints.txt pins pillow 13 (the image loader is verified on it), and
# gradio works with pillow 13 (the demo tests run on it). So gradio itself is installed with --no-deps and then
# its declared requirements, pillow without its cap, with the project's constraints (nothing pinned moves).
set -euo pipefail
cd "$(dirname "$0")/.."

pin() {  # the version constraints.txt pins for a package, else the default given
  local v
  v=$(grep -iE "^$1==" constraints.txt 2>/dev/null | head -1 | cut -d= -f3 || true)
  echo "${v:-$2}"
}
GRADIO_VERSION=$(pin gradio 6.31.0)
PLAYWRIGHT_VERSION=$(pin playwright 1.65.2)
PY=${PYTHON:-python}

have_python_deps() {
  "$PY" - "$GRADIO_VERSION" "$PLAYWRIGHT_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
import gradio, playwright.sync_api  # noqa: F401  (importable, with every dependency)
sys.exit(0 if (version("gradio"), version("playwright")) == (sys.argv[1], sys.argv[2]) else 1)
EOF
}

if have_python_deps; then
  echo "demo-deps: gradio $GRADIO_VERSION and playwright $PLAYWRIGHT_VERSION already installed"
else
  echo "demo-deps: installing gradio $GRADIO_VERSION and playwright $PLAYWRIGHT_VERSION"
  "$PY" -m pip install -q --no-deps "gradio==$GRADIO_VERSION"
  # gradio's own requirements (not its extras; pillow uncapped), under the project's constraints
  mapfile -t REQS < <("$PY" - <<'EOF'
from importlib.metadata import requires
try:
    from packaging.requirements import Requirement
except ImportError:  # a bare environment: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
for line in requires("gradio") or []:
    req = Requirement(line)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue  # an extra's requirement, or another Python's
    # pillow without gradio's cap: the constraints choose its version
    print(req.name if req.name.lower() == "pillow" else str(req).split(";")[0])
EOF
)
  "$PY" -m pip install -q -c constraints.txt "${REQS[@]}" "playwright==$PLAYWRIGHT_VERSION"
  have_python_deps || { echo "demo-deps: gradio / playwright still not importable" >&2; exit 1; }
fi

if [ -x /usr/bin/chromium ]; then
  echo "demo-deps: $(/usr/bin/chromium --version 2>/dev/null | head -1 || echo chromium) already installed"
else
  echo "demo-deps: installing Debian's chromium"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q --no-install-recommends chromium || {
    $SUDO apt-get update -q && $SUDO apt-get install -y -q --no-install-recommends chromium
  }
fi
