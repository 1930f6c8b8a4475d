"""The vLLM-environment tests (``.venv-vllm/bin/python -m pytest tests/vllm``; ``.ci/vllm-tests.sh`` runs them).

They compare the vLLM engine with the HF path, whose results come from the MAIN environment: the fixtures (a tiny
model directory, the synthetic world, the HF path's greedy token ids) are made by ``tests/vllm/make_fixtures.py``
under the main environment's python. ``ONELLM_VLLM_FIXTURES=<dir>`` reuses fixtures made before (what
``.ci/vllm-tests.sh`` does); otherwise they are made here, with ``ONELLM_MAIN_PYTHON`` (default: the repository's
``.venv/bin/python``). Nothing is skipped: without vLLM or without the main environment the session fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: starts in seconds
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; without it vLLM reserves most of the RAM
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

REPO = Path(__file__).resolve().parents[2]


def main_python() -> str:
    return os.environ.get("ONELLM_MAIN_PYTHON") or str(REPO / ".venv" / "bin" / "python")


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> dict:
    given = os.environ.get("ONELLM_VLLM_FIXTURES")
    if given:
        path = Path(given) / "fixtures.json"
        if not path.exists():
            raise pytest.UsageError(f"ONELLM_VLLM_FIXTURES={given}: no fixtures.json there")
    else:
        out = tmp_path_factory.mktemp("vllm-fixtures")
        python = main_python()
        if not Path(python).exists():
            raise pytest.UsageError(f"the main environment's python {python} is missing: build .venv (.ci/run) or "
                                    f"set ONELLM_MAIN_PYTHON / ONELLM_VLLM_FIXTURES")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
        subprocess.run([python, str(REPO / "tests" / "vllm" / "make_fixtures.py"), "--out", str(out)], check=True,
                       env=env, stdout=sys.stderr)
        path = out / "fixtures.json"
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def engine(fixtures):
    from onellm.vllm.engine import OneLLMEngine

    return OneLLMEngine(fixtures["model_dir"], dtype="float32", kv_cache_gib=1, max_num_seqs=64, seed=0)


@pytest.fixture(scope="session")
def greedy(fixtures):
    from onellm.generation import GenerationConfig

    return GenerationConfig(temperature=0, max_new_tokens=fixtures["max_new_tokens"])
