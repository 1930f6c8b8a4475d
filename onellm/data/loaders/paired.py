"""Depth / normal map loader (spec §3.5): the map plus its paired RGB image -> (2, 3, S, S) = [RGB, map].

The released model was trained on [RGB, map] pairs and always expects the RGB image (maintainer, issue #9),
so the ``rgb`` option is required. The map is converted to 3-channel RGB (grey depth -> 3 equal channels),
resized to the RGB image's size with bicubic, and then both images get the SAME crop: one RandomResizedCrop
parameter draw in train (``transform_pairimg_train``), ``Resize(S)`` + ``CenterCrop(S)`` in eval.

High bit-depth maps (16-bit PNG, 32-bit int/float TIFF) would saturate under PIL's ``convert("RGB")``; they
are scaled to 0..255 with the map's own maximum (negative values clipped to 0) before the conversion.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from .sources import as_source, exists, opened, suffix
from .image import EXTENSIONS as IMAGE_EXTENSIONS
from .image import apply_crop, eval_crop, open_rgb, random_crop_params, to_clip_tensor

EXTENSIONS = IMAGE_EXTENSIONS
_HIGH_DEPTH_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")


def _open_map(path: str | Path) -> Image.Image:
    """Open a depth/normal map as RGB; high bit-depth greyscale is rescaled by its own max first."""
    try:
        with Image.open(opened(path)) as img:
            if img.mode not in _HIGH_DEPTH_MODES:
                return img.convert("RGB")
            values = np.asarray(img, dtype=np.float64).clip(min=0.0)  # (H, W)
    except Exception as exc:
        raise InputError(path, f"cannot decode image: {exc}") from exc
    if not np.isfinite(values).all():
        raise InputError(path, "map contains NaN or infinite values")
    peak = values.max()
    scaled = np.round(values * (255.0 / peak)) if peak > 0 else values
    return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")


def load_paired(path: str | Path, *, rgb: str | Path | None, train: bool, size: int) -> torch.Tensor:
    """Load a depth/normal map and its RGB image -> (2, 3, size, size) float32 = [RGB, map]."""
    if rgb is None or str(rgb) == "":
        raise InputError(path, "the paired RGB image is required for a depth/normal map (option 'rgb')")
    rgb = as_source(rgb)
    if suffix(rgb) not in IMAGE_EXTENSIONS:
        raise InputError(rgb, f"unsupported RGB image extension {suffix(rgb)!r}; supported: "
                              f"{', '.join(IMAGE_EXTENSIONS)}")
    if not exists(rgb):
        raise InputError(rgb, f"paired RGB image of {path} not found")
    image = open_rgb(rgb)
    x_image = _open_map(path)
    if x_image.size != image.size:
        x_image = x_image.resize(image.size, Image.Resampling.BICUBIC)
    if train:
        params = random_crop_params(image)  # one draw shared by both images
        pair = [apply_crop(im, params, size) for im in (image, x_image)]
    else:
        pair = [eval_crop(im, size) for im in (image, x_image)]
    return torch.stack([to_clip_tensor(im) for im in pair])  # (2, 3, S, S)
