"""Shared by tests/test_demo.py and tests/test_demo_browser.py: the demo's optional dependencies, the world.

The demo's tests are not skipped silently: CI installs gradio, playwright and Chromium with .ci/demo-deps.sh, so a
missing one fails the test, unless ONELLM_SKIP_BROWSER_TESTS=1 is set explicitly (then they are skipped).
"""
from __future__ import annotations

import importlib.util
import os

import pytest

SKIP_ENV = "ONELLM_SKIP_BROWSER_TESTS"


def require_demo_deps(browser: bool = False) -> None:
    """Fail (or skip, with ONELLM_SKIP_BROWSER_TESTS=1) when gradio, or for browser tests playwright / Chromium,
    are missing."""
    missing = [m for m in ("gradio", *(("playwright",) if browser else ())) if importlib.util.find_spec(m) is None]
    if browser:
        from onellm.demo.browser import chromium_path

        if chromium_path() is None:
            missing.append("chromium (/usr/bin/chromium)")
    if missing:
        message = f"the demo tests need {', '.join(missing)}: run .ci/demo-deps.sh (or set {SKIP_ENV}=1 to skip)"
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(message)
        pytest.fail(message)


def world_inputs(root) -> dict[str, list[tuple[str, dict]]]:
    """modality -> [(path, loader options)] of the samples of a synthetic world split, paths absolute."""
    import json
    from pathlib import Path

    root = Path(root)
    out: dict[str, list[tuple[str, dict]]] = {}
    for line in (root / "alignment.jsonl").read_text().splitlines():
        entry = json.loads(line)["inputs"][0]
        options = {k: v for k, v in entry.items() if k not in ("modality", "path")}
        for key in ("rgb", "timestamps"):
            if key in options:
                options[key] = str(root / options[key])
        out.setdefault(entry["modality"], []).append((str(root / entry["path"]), options))
    return out
