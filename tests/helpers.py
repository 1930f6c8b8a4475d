"""Shared builders for tests: tiny models and batches made in memory."""
from __future__ import annotations

import torch

from onellm.config import OneLLMConfig
from onellm.constants import IGNORE_INDEX
from onellm.data.collate import collate_packed
from onellm.model import OneLLM, input_shape
from onellm.processing import OneLLMProcessor, pack_sample


def tiny_config(**overrides) -> OneLLMConfig:
    return OneLLMConfig.preset("tiny", **overrides)


def random_input(config: OneLLMConfig, modality: str, generator: torch.Generator | None = None) -> torch.Tensor:
    shape = input_shape(config, modality)
    if modality == "point":
        return torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator)


def random_sample(model: OneLLM, inputs: list[str], text_len: int, generator: torch.Generator, id=None):
    """A packed sample: [bos, blocks..., text] with the second half of the text supervised."""
    vocab = model.config.llm.vocab_size
    ids = [model.config.llm.bos_token_id] + torch.randint(3, vocab, (text_len,), generator=generator).tolist()
    labels = [IGNORE_INDEX] * (1 + text_len // 2) + ids[1 + text_len // 2:]
    xs = [(m, random_input(model.config, m, generator)) for m in inputs]
    return pack_sample(model.config, ids, labels, xs, id=id)


def batch_of(samples, **kw):
    """Model inputs (a BatchFeature) of packed samples: ``model(**batch_of(samples))``."""
    return collate_packed(samples, **kw)


def tiny_model_with_tokenizer(tokenizer, seed: int = 0, sharpen: float = 4.0, **overrides) -> OneLLM:
    """A tiny model whose vocabulary is the tokenizer's; ``sharpen`` scales the LM head so greedy decoding
    has clear winners (random tiny models are otherwise near-uniform and float noise could flip ties)."""
    torch.manual_seed(seed)
    model = OneLLM(tiny_config(**{"llm.vocab_size": len(tokenizer), **overrides})).eval()
    with torch.no_grad():
        model.llm.lm_head.weight.mul_(sharpen)
    return model


def processor_for(model: OneLLM, tokenizer) -> OneLLMProcessor:
    return OneLLMProcessor.for_config(model.config, tokenizer)


def request_sample(processor: OneLLMProcessor, modalities, question: str, generator: torch.Generator, id=None):
    """A chat-template request with random inputs of ``modalities`` (blocks after BOS)."""
    xs = [(m, random_input(processor.config, m, generator)) for m in modalities]
    return processor.prompt_sample(question, xs, id=id)


def write_input_files(directory, generator_seed: int = 0) -> dict:
    """Small real files for each modality (tiny geometry) + a corrupt and a missing one; returns input dicts."""
    import numpy as np
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(generator_seed)
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / "img.png")
    Image.fromarray(rng.integers(0, 255, (40, 48), dtype=np.uint8)).save(d / "depth.png")
    soundfile.write(d / "tone.wav", (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32), 16000)
    np.save(d / "cloud.npy", rng.random((700, 6)).astype(np.float32))
    np.save(d / "brain.npy", rng.standard_normal((3, 15724)).astype(np.float32))
    np.save(d / "motion.npy", rng.standard_normal((6, 500)).astype(np.float32))
    (d / "broken.png").write_bytes(b"not an image at all")
    return {
        "image": {"modality": "image", "path": "img.png"},
        "depth": {"modality": "depth", "path": "depth.png", "rgb": "img.png"},
        "audio": {"modality": "audio", "path": "tone.wav"},
        "point": {"modality": "point", "path": "cloud.npy"},
        "fmri": {"modality": "fmri", "path": "brain.npy"},
        "imu": {"modality": "imu", "path": "motion.npy"},
        "broken": {"modality": "image", "path": "broken.png"},
        "missing": {"modality": "audio", "path": "nowhere.wav"},
    }


def synth_world(tmp_path_factory, per_modality: int, seed: int, modalities=None):
    """The synthetic world's train split (files + manifests) in a fresh folder."""
    from onellm.data.synth import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, per_modality=per_modality, seed=seed, split="train", modalities=modalities)
    return out / "train"
