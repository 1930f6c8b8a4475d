"""Image loader (spec §3.1): PIL RGB -> CLIP-normalised (3, S, S) float32.

Eval: ``Resize(S, bicubic)`` + ``CenterCrop(S)`` (``image_cap_cococap.py``). Train: ``RandomResizedCrop(S,
scale=(0.9, 1), ratio=(3/4, 4/3), bicubic)`` (``transform_img_train``). Transforms run on PIL images, as in the
original, so resizing is PIL's (antialiased) bicubic. The random crop draws from torch's global RNG.

The transforms are torchvision's (0.29) PIL path re-expressed with PIL + numpy + torch, bit for bit: the same
size rounding (``int(S * long / short)``), centre-crop offsets (``round((H - S) / 2)``), ``get_params`` draws
(up to 10 tries of ``uniform_`` scale and log-ratio, then ``randint`` offsets; centre fallback) and
``to_tensor`` (uint8 -> float32 / 255), so the loader also runs where torchvision is absent (the vLLM
environment). ``tests/test_image_ops.py`` holds them equal to torchvision.

The CLIP statistics and :func:`clip_normalize` live here; the video and paired-map loaders import them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..errors import InputError
from .sources import opened

# OpenAI CLIP pixel statistics (spec §3.1).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# RandomResizedCrop parameters of every OneLLM train transform (image and paired maps).
CROP_SCALE: tuple[float, float] = (0.9, 1.0)
CROP_RATIO: tuple[float, float] = (0.75, 1.3333)
BICUBIC = Image.Resampling.BICUBIC

EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    """Normalise RGB values in [0, 1] with the CLIP mean/std; ``x`` is (..., 3, H, W)."""
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device)[:, None, None]  # (3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def open_rgb(path: str | Path) -> Image.Image:
    """Decode an image file fully and convert it to RGB; decoder failures become :class:`InputError`."""
    try:
        with Image.open(opened(path)) as img:
            return img.convert("RGB")  # convert() forces the full decode inside the try
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, DecompressionBombError, ...
        raise InputError(path, f"cannot decode image: {exc}") from exc


def to_tensor(img: Image.Image) -> torch.Tensor:
    """``torchvision.transforms.functional.to_tensor`` of an 8-bit PIL image: (C, H, W) float32 in [0, 1]."""
    if img.mode not in ("RGB", "RGBA", "L", "LA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        raise ValueError(f"to_tensor expects an 8-bit image, got mode {img.mode!r}")
    array = np.array(img, np.uint8, copy=True)  # (H, W[, C])
    x = torch.from_numpy(array).view(img.size[1], img.size[0], len(img.getbands()))  # (H, W, C)
    return x.permute((2, 0, 1)).contiguous().to(dtype=torch.get_default_dtype()).div(255)


def to_clip_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> CLIP-normalised (3, H, W) float32."""
    return clip_normalize(to_tensor(img))


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(size)``: short side ``size``, long side
    ``int(size * long / short)`` (truncated)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)


def resize_short_side(img: Image.Image, size: int) -> Image.Image:
    """``Resize(size, bicubic)`` on a PIL image (unchanged when it already has that size)."""
    new_w, new_h = resized_size(img.width, img.height, size)
    if (new_w, new_h) == (img.width, img.height):
        return img
    return img.resize((new_w, new_h), BICUBIC)


def crop(img: Image.Image, top: int, left: int, height: int, width: int) -> Image.Image:
    """torchvision ``crop`` on PIL: the box (left, top, left + width, top + height); outside pixels are 0."""
    return img.crop((left, top, left + width, top + height))


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """``CenterCrop(size)`` on PIL: zero padding when the image is smaller, then offsets round((H - S) / 2)."""
    width, height = img.size
    if size > width or size > height:
        pad = ((size - width) // 2 if size > width else 0, (size - height) // 2 if size > height else 0,
               (size - width + 1) // 2 if size > width else 0, (size - height + 1) // 2 if size > height else 0)
        fill = tuple([0] * len(img.getbands())) if len(img.getbands()) > 1 else 0
        img = ImageOps.expand(img, border=pad, fill=fill)
        width, height = img.size
        if (width, height) == (size, size):
            return img
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return crop(img, top, left, size, size)


def eval_crop(img: Image.Image, size: int) -> Image.Image:
    """``Resize(size)`` (short side, bicubic) then ``CenterCrop(size)``."""
    return center_crop(resize_short_side(img, size), size)


def random_crop_params(img: Image.Image, scale: tuple[float, float] = CROP_SCALE,
                       ratio: tuple[float, float] = CROP_RATIO) -> tuple[int, int, int, int]:
    """One draw (top, left, height, width) of the OneLLM RandomResizedCrop, from torch's global RNG
    (``torchvision.transforms.RandomResizedCrop.get_params``: the same draws in the same order)."""
    width, height = img.size
    area = height * width
    log_ratio = torch.log(torch.tensor(list(ratio)))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
        aspect_ratio = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1])).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = torch.randint(0, height - h + 1, size=(1,)).item()
            j = torch.randint(0, width - w + 1, size=(1,)).item()
            return int(i), int(j), int(h), int(w)
    in_ratio = float(width) / float(height)  # fallback: central crop
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def apply_crop(img: Image.Image, params: tuple[int, int, int, int], size: int) -> Image.Image:
    """Crop ``params`` (top, left, height, width) and resize to (size, size), bicubic (``resized_crop``)."""
    img = crop(img, *params)
    if img.size == (size, size):
        return img
    return img.resize((size, size), BICUBIC)


def load_image(path: str | Path, *, train: bool, size: int) -> torch.Tensor:
    """Load an image file -> (3, size, size) float32, CLIP-normalised."""
    img = open_rgb(path)
    img = apply_crop(img, random_crop_params(img), size) if train else eval_crop(img, size)
    return to_clip_tensor(img)
