"""Depth map: [RGB, depth] pairs through CLIP's patch embedding, averaged after CLIP (spec §1.4, §3.5)."""
from __future__ import annotations

from pathlib import Path

from .paired_map import DISTANCE_M, ENCODER_INPUT, LOADER, input_shape, write_scene
from .base import ModalityDefinition, SynthSpec
from .synth_common import SOLID_SHAPES


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A solid near, midway or far from the camera; its colour is drawn from a palette (not an attribute)."""
    from ..data.synth.render import DEPTH_PALETTE

    distance = rng.uniform(*DISTANCE_M[a["distance"]])
    rgb = DEPTH_PALETTE[int(rng.integers(len(DEPTH_PALETTE)))]
    return write_scene(root, stem, "depth", a["shape"], distance, rgb, rng)


DEPTH = ModalityDefinition(
    name="depth",
    official_name="rgbd",
    aliases=("rgbd",),
    encoder_input=ENCODER_INPUT,
    input_shape=input_shape,
    loader=LOADER,
    caption_prompt="Provide a one-sentence caption for the provided depth map.",
    noun="depth map",
    synth=SynthSpec(
        attributes={"shape": SOLID_SHAPES, "distance": ("near", "midway", "far")},
        captions=("a {shape}, {distance_value}", "a {shape} {distance}", "a {shape} standing on the ground {distance}"),
        questions={"shape": "What shape is the object?", "distance": "Is the object near, midway or far?"},
        phrases={"distance": {"near": "near the camera", "midway": "midway from the camera",
                              "far": "far from the camera"}},
        write=write_sample, stream=4),
    demo_kind="paired_map",
)
