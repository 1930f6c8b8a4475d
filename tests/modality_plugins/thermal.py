"""A ninth modality, defined entirely outside the library: a 1-channel thermal image (Kelvin per pixel).

It is what a user writes to add a modality (the README's "Adding a modality" shows this file): one definition with
its own Conv2d tokenizer, its input-config section, a loader, prompts and a synthetic-world generator, registered
with one call. Importing this module registers it (recipes list it under ``modules:``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onellm.modalities as modalities
from onellm.modalities import LoaderSpec, ModalityDefinition, OwnTokenizer, SynthSpec


@dataclass
class ThermalInputs:
    max_kelvin: float = 400.0  # temperatures are divided by this (0..1 for everyday scenes)


def build_tokenizer(config):
    from onellm.model.token_layers import Conv2dTokenizer

    p = config.vision.patch_size
    return Conv2dTokenizer(1, config.dim, kernel_size=p, stride=p)


def num_tokens(config) -> int:
    return (config.vision.image_size // config.vision.patch_size) ** 2


def load(path: Path, *, train: bool, config) -> "torch.Tensor":
    """(H, W) Kelvin ``.npy`` -> (1, S, S) in [0, 1], bilinear to the model's image size."""
    import numpy as np
    import torch

    from onellm.data.errors import InputError

    kelvin = np.load(path, allow_pickle=False)
    if kelvin.ndim != 2:
        raise InputError(path, f"expected a (height, width) temperature map, got shape {kelvin.shape}")
    x = torch.from_numpy(kelvin.astype(np.float32))[None, None]  # (1, 1, H, W)
    size = config.vision.image_size
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x[0] / config.inputs.thermal.max_kelvin).clamp(0, 2)  # (1, S, S)


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A warm or cold blob on the left or right of a 290 K background, with sensor noise."""
    import numpy as np

    yy, xx = np.mgrid[0:48, 0:48]
    cx = 12 if a["side"] == "left" else 36
    blob = np.exp(-((xx - cx) ** 2 + (yy - 24) ** 2) / 60.0)
    delta = 60.0 if a["temperature"] == "hot" else -60.0
    kelvin = 290.0 + delta * blob + rng.normal(0, 1.0, blob.shape)
    rel = f"{stem}.npy"
    np.save(root / rel, kelvin.astype(np.float32))
    return {"modality": "thermal", "path": rel}


THERMAL = ModalityDefinition(
    name="thermal",
    aliases=("infrared",),
    encoder_input=OwnTokenizer(build=build_tokenizer, num_tokens=num_tokens),
    input_shape=lambda config: (1, config.vision.image_size, config.vision.image_size),
    loader=LoaderSpec(load, (".npy",)),
    caption_prompt="Provide a one-sentence caption for the provided thermal image.",
    noun="thermal image",
    input_config=ThermalInputs,
    synth=SynthSpec(
        attributes={"temperature": ("hot", "cold"), "side": ("left", "right")},
        captions=("a {temperature} spot on the {side}", "a thermal image of a {temperature} spot on the {side}"),
        questions={"temperature": "Is the spot hot or cold?", "side": "Is the spot on the left or the right?"},
        write=write_sample),
)

if not modalities.is_registered("thermal"):
    modalities.register(THERMAL)
