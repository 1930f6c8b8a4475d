"""Image loader (spec §3.1): PIL RGB -> CLIP-normalised (3, S, S) float32.

Eval: ``Resize(S, bicubic)`` + ``CenterCrop(S)`` (``image_cap_cococap.py``). Train: ``RandomResizedCrop(S,
scale=(0.9, 1), ratio=(3/4, 4/3), bicubic)`` (``transform_img_train``). Transforms run on PIL images, as in the
original, so resizing is PIL's (antialiased) bicubic. The random crop draws from torch's global RNG.

The CLIP statistics and :func:`clip_normalize` live here; the video and paired-map loaders import them.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF
from PIL import Image

from ..errors import InputError

# OpenAI CLIP pixel statistics (spec §3.1).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# RandomResizedCrop parameters of every OneLLM train transform (image and paired maps).
CROP_SCALE: tuple[float, float] = (0.9, 1.0)
CROP_RATIO: tuple[float, float] = (0.75, 1.3333)
BICUBIC = T.InterpolationMode.BICUBIC

EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    """Normalise RGB values in [0, 1] with the CLIP mean/std; ``x`` is (..., 3, H, W)."""
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device)[:, None, None]  # (3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file fully and convert it to RGB; decoder failures become :class:`InputError`."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() forces the full decode inside the try
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, DecompressionBombError, ...
        raise InputError(path, f"cannot decode image: {exc}") from exc


def to_clip_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> CLIP-normalised (3, H, W) float32."""
    return clip_normalize(TF.to_tensor(img))


def eval_crop(img: Image.Image, size: int) -> Image.Image:
    """``Resize(size)`` (short side, bicubic) then ``CenterCrop(size)``."""
    return TF.center_crop(TF.resize(img, size, interpolation=BICUBIC), [size, size])


def random_crop_params(img: Image.Image) -> tuple[int, int, int, int]:
    """One draw (top, left, height, width) of the OneLLM RandomResizedCrop, from torch's global RNG."""
    i, j, h, w = T.RandomResizedCrop.get_params(img, list(CROP_SCALE), list(CROP_RATIO))
    return int(i), int(j), int(h), int(w)


def apply_crop(img: Image.Image, params: tuple[int, int, int, int], size: int) -> Image.Image:
    """Crop ``params`` (top, left, height, width) and resize to (size, size), bicubic."""
    return TF.resized_crop(img, *params, [size, size], interpolation=BICUBIC)


def load_image(path: str | Path, *, train: bool, size: int) -> torch.Tensor:
    """Load an image file -> (3, size, size) float32, CLIP-normalised."""
    img = open_rgb(path)
    img = apply_crop(img, random_crop_params(img), size) if train else eval_crop(img, size)
    return to_clip_tensor(img)
