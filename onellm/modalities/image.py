"""Image: one RGB picture, tokenised by CLIP's own frozen patch embedding (spec §1.4, §3.1)."""
from __future__ import annotations

from pathlib import Path

from ..data.loaders.formats import IMAGE_FILES
from .base import ClipPatches, LoaderSpec, ModalityDefinition, SynthSpec
from .synth_common import COLOURS, FLAT_SHAPES


def load(path: Path, *, train: bool, config) -> "torch.Tensor":
    from ..data.loaders.image import load_image

    return load_image(path, train=train, size=config.vision.image_size)


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A coloured 2-D shape; PNG and JPEG alternate so the loader reads both."""
    from PIL import Image

    from ..data.synth.render import save_png, shape_image

    img = shape_image(rng, a["colour"], a["shape"])
    if i % 2 == 0:
        rel = f"{stem}.png"
        save_png(root / rel, img)
    else:
        rel = f"{stem}.jpg"
        Image.fromarray(img).save(root / rel, format="JPEG", quality=92)
    return {"modality": "image", "path": rel}


IMAGE = ModalityDefinition(
    name="image",
    encoder_input=ClipPatches(),
    input_shape=lambda config: (3, config.vision.image_size, config.vision.image_size),
    loader=LoaderSpec(load, IMAGE_FILES, decoded="pil"),
    caption_prompt="Provide a one-sentence caption for the provided image.",
    noun="image",
    synth=SynthSpec(
        attributes={"colour": COLOURS, "shape": FLAT_SHAPES},
        captions=("a {colour} {shape}", "a picture of a {colour} {shape}", "a {colour} {shape} on a grey background"),
        questions={"colour": "What colour is the shape?", "shape": "What shape is shown?"},
        write=write_sample, stream=0),
    demo_kind="image",
)
