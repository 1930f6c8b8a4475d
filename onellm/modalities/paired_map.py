"""Shared by depth and normal maps: a map and its paired RGB image -> (2, 3, S, S) = [RGB, map] (spec §3.5)."""
from __future__ import annotations

from pathlib import Path

from ..data.loaders.formats import IMAGE_FILES
from .base import ClipPatches, LoaderSpec

# Object distances (metres) of "near" / "midway" / "far" synthetic depth scenes: three values, so that the
# quickstart's bar of 2 x chance (67 %) can be met without being perfect. The gaps between the ranges are 30-40
# grey levels of the depth map: with 17 (2.7-3.1 / 3.7-4.2 / 4.8-5.6 m) "midway" was hardly ever named (depth only,
# 600 steps from stage II, seed 1: distance 44 % there, 65 % with these).
NEAR_M, MIDWAY_M, FAR_M = (2.0, 2.5), (3.5, 4.0), (5.5, 6.5)
DISTANCE_M = {"near": NEAR_M, "midway": MIDWAY_M, "far": FAR_M}


def load(path: Path, *, train: bool, config, rgb: str | Path | None = None) -> "torch.Tensor":
    from ..data.loaders.paired import load_paired

    return load_paired(path, rgb=rgb, train=train, size=config.vision.image_size)


LOADER = LoaderSpec(load, IMAGE_FILES, options=("rgb",), required=("rgb",), path_options=("rgb",),
                    option_help={"rgb": "the paired RGB image of the map (required)"})
ENCODER_INPUT = ClipPatches(stacked=True)


def input_shape(config) -> tuple[int, ...]:
    return (2, 3, config.vision.image_size, config.vision.image_size)


def write_scene(root: Path, stem: str, modality: str, shape: str, distance: float, rgb: tuple[int, int, int],
                rng) -> dict:
    """Render one synthetic 3-D scene and write its RGB photo and its depth or normal map as PNG."""
    from ..data.synth.render import render_scene, save_png

    image, depth, normal = render_scene(rng, shape, distance, rgb)
    rel, rel_rgb = f"{stem}_{modality}.png", f"{stem}_rgb.png"
    save_png(root / rel, depth if modality == "depth" else normal)
    save_png(root / rel_rgb, image)
    return {"modality": modality, "path": rel, "rgb": rel_rgb}
