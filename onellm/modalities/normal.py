"""Normal map: [RGB, normal] pairs through CLIP's patch embedding, averaged after CLIP (spec §1.4, §3.5)."""
from __future__ import annotations

from pathlib import Path

from .paired_map import ENCODER_INPUT, LOADER, input_shape, write_scene
from .base import ModalityDefinition, SynthSpec
from .synth_common import COLOURS, SOLID_SHAPES


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A coloured solid at a random distance."""
    from ..data.synth.render import COLOUR_RGB

    return write_scene(root, stem, "normal", a["shape"], rng.uniform(2.6, 4.2),
                                  COLOUR_RGB[a["colour"]], rng)


NORMAL = ModalityDefinition(
    name="normal",
    official_name="rgbn",
    aliases=("rgbn",),
    encoder_input=ENCODER_INPUT,
    input_shape=input_shape,
    loader=LOADER,
    caption_prompt="Provide a one-sentence caption for the provided normal map.",
    noun="normal map",
    synth=SynthSpec(
        attributes={"shape": SOLID_SHAPES, "colour": COLOURS},
        captions=("a {colour} {shape}", "a {colour} {shape} on the ground", "a rendering of a {colour} {shape}"),
        questions={"shape": "What shape is the object?", "colour": "What colour is the object?"},
        write=write_sample, stream=5),
    demo_kind="paired_map",
)
