import os

# tests/vllm runs in the vLLM environment (.venv-vllm) through .ci/vllm-tests.sh, not in this suite
collect_ignore = ["vllm"]

# Any accidental hub access must fail at once instead of retrying for a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


TOKENIZER_TEXTS = [
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions.",
    "### Human: What colour is the object?\n### Assistant: red.\n###",
    "###Human: Describe the scene.\n###Assistant: a blue square on a grey background\n###",
    "a red circle", "a green square", "a yellow triangle", "a blue ball moving horizontally",
    "a high beeping tone", "a low steady tone", "walking and turning left", "a cube, near", "a sphere, far",
    "Provide a one-sentence caption for the provided image.", "What is this? It is a torus.",
    "0 1 2 3 4 5 6 7 8 9 10 100 ! ? , . : ; ' \" ( ) [ ] - _ / \\ + = * & % $ # @",
]


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from onellm.data.text import train_sentencepiece

    d = tmp_path_factory.mktemp("tokenizer")
    train_sentencepiece(TOKENIZER_TEXTS * 20, d, vocab_size=400)
    return d


@pytest.fixture(scope="session")
def text_tokenizer(tokenizer_dir):
    from onellm.data.text import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny model directory made by `onellm init` (random weights, a tokenizer trained on the fly); read-only."""
    from onellm.cli import main

    out = tmp_path_factory.mktemp("models") / "tiny"
    assert main(["init", "--preset", "tiny", "--out", str(out), "--seed", "1"]) == 0
    return out
