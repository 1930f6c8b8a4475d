"""fMRI: a voxel response vector (NSD nsdgeneral ROI), tokenised by its own Linear into a few tokens (spec §1.4,
§3.7)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.loaders.formats import ARRAY_FILES
from .base import LoaderSpec, ModalityDefinition, OwnTokenizer, SynthSpec
from .synth_common import COLOURS, FLAT_SHAPES


ATTRIBUTES = {"colour": COLOURS, "shape": FLAT_SHAPES}  # of the shape the synthetic subject saw


@dataclass
class FMRIInputs:
    """(1, voxels); Linear(voxels, tokens * D) -> tokens."""

    voxels: int = 15724
    tokens: int = 8


def build_tokenizer(config):
    from ..model.token_layers import LinearTokenizer

    fmri = config.inputs.fmri
    return LinearTokenizer(fmri.voxels, config.dim, fmri.tokens)


def load(path: Path, *, train: bool, config) -> "torch.Tensor":
    from ..data.loaders.fmri import load_fmri

    return load_fmri(path, voxels=config.inputs.fmri.voxels)


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A voxel response to a coloured shape; as many voxels as the model's fMRI input has."""
    import numpy as np

    from ..data.synth.signals import fmri_response

    rel = f"{stem}.npy"
    np.save(root / rel, fmri_response(rng, a, inputs.voxels, ATTRIBUTES))
    return {"modality": "fmri", "path": rel}


FMRI = ModalityDefinition(
    name="fmri",
    encoder_input=OwnTokenizer(build=build_tokenizer, num_tokens=lambda config: config.inputs.fmri.tokens),
    input_shape=lambda config: (1, config.inputs.fmri.voxels),
    loader=LoaderSpec(load, ARRAY_FILES, augments=False),
    caption_prompt="Describe the scene based on fMRI data.",
    noun="fMRI recording",
    input_config=FMRIInputs,
    legacy_input_fields={"fmri_voxels": "voxels", "fmri_tokens": "tokens"},
    synth=SynthSpec(
        attributes=ATTRIBUTES,
        captions=("a {colour} {shape}", "an image of a {colour} {shape}", "a {colour} {shape} on a grey background"),
        questions={"colour": "What colour was the shape the subject saw?", "shape": "What shape did the subject see?"},
        write=write_sample, stream=7),
    demo_kind="voxels",
)
