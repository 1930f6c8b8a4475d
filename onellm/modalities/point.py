"""Point cloud: xyz + rgb points, tokenised by furthest point sampling, kNN groups and a shared 1x1 conv (spec §1.4,
§3.4)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..data.loaders.formats import MESH_FILES, POINT_ARRAY_FILES
from .base import LoaderSpec, ModalityDefinition, OwnTokenizer, SynthSpec
from .synth_common import COLOURS


@dataclass
class PointInputs:
    """(num_points, channels) xyz + rgb; FPS picks num_groups centres, kNN takes group_size neighbours each."""

    num_points: int = 8192
    channels: int = 6
    num_groups: int = 1024
    group_size: int = 32
    # "rgb" samples and groups on channels 3:6 as the released checkpoint was trained (spec §1.4, §7.2)
    sampling: Literal["xyz", "rgb"] = "xyz"


def build_tokenizer(config):
    from ..model.point import PointPatchEmbed

    p = config.inputs.point
    return PointPatchEmbed(p.channels, config.dim, p.num_groups, p.group_size, p.sampling)


def load(path: Path, *, train: bool, config) -> "torch.Tensor":
    from ..data.loaders.point import load_point

    return load_point(path, train=train, num_points=config.inputs.point.num_points)


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A coloured solid: a PLY mesh (sampled by the loader) and a sampled .npy cloud alternate."""
    import numpy as np

    from ..data.synth.shapes3d import sample_cloud, write_mesh

    if i % 2 == 0:
        rel = f"{stem}.ply"
        write_mesh(root / rel, rng, a["shape"], a["colour"])
    else:
        rel = f"{stem}.npy"
        np.save(root / rel, sample_cloud(rng, a["shape"], a["colour"]))
    return {"modality": "point", "path": rel}


POINT = ModalityDefinition(
    name="point",
    aliases=("pointcloud", "points"),
    encoder_input=OwnTokenizer(build=build_tokenizer, num_tokens=lambda config: config.inputs.point.num_groups),
    input_shape=lambda config: (config.inputs.point.num_points, config.inputs.point.channels),
    loader=LoaderSpec(load, POINT_ARRAY_FILES + MESH_FILES),
    caption_prompt="Provide a one-sentence caption for the provided point cloud.",
    noun="point cloud",
    input_config=PointInputs,
    legacy_input_fields={"point_num_points": "num_points", "point_channels": "channels",
                         "point_num_groups": "num_groups", "point_group_size": "group_size",
                         "point_sampling": "sampling"},
    synth=SynthSpec(
        attributes={"shape": ("sphere", "cube", "cone", "torus"), "colour": COLOURS},
        captions=("a {colour} {shape}", "a 3D model of a {colour} {shape}", "a point cloud of a {colour} {shape}"),
        questions={"shape": "What shape is the object?", "colour": "What colour is the object?"},
        write=write_sample, stream=3),
    demo_kind="point_cloud",
)
