"""Decoders for every kind of input file, with the original preprocessing (spec §1.4, §3).

Which decoder a modality uses, with which options and file extensions, is part of its definition in
``onellm.modalities``; :func:`load_modality` dispatches through that registry. Shapes at ``onellm-7b``
(S = ``config.vision.image_size``):

=========  ==========================  ===================================================
modality   shape (onellm-7b)           options
=========  ==========================  ===================================================
image      (3, S, S)                   -
video      (clips * crops, 3, S, S)    ``backend``: "auto" (decord, PyAV fallback) | "decord" | "av"
audio      (1, mel_bins, frames)       -
point      (num_points, 6)             -
depth      (2, 3, S, S) = [RGB, map]   ``rgb``: the paired RGB image (required)
normal     (2, 3, S, S) = [RGB, map]   ``rgb``: the paired RGB image (required)
imu        (6, imu_length)             ``timestamps`` (.npy, ms), ``start``/``end`` (s), ``rate`` (Hz)
fmri       (1, voxels)                 -
=========  ==========================  ===================================================

``train=True`` turns on the original training augmentations (random crops, SpecAugment, random point
subsets), drawn from torch's global RNG. Every bad input raises :class:`~onellm.data.errors.InputError`
naming the file.
"""
from __future__ import annotations

from typing import Any

__all__ = ["load_modality", "supported_extensions", "option_names"]


def load_modality(modality: str, source: Any, train: bool = False, config: Any = None, **options: Any):
    """See :func:`onellm.modalities.loading.load_modality`."""
    from ...modalities.loading import load_modality as load

    return load(modality, source, train=train, config=config, **options)


def supported_extensions(modality: str) -> tuple[str, ...]:
    """File extensions (lower case, with the dot) that ``modality``'s loader reads."""
    from ...modalities import get

    return get(modality).loader.extensions


def option_names(modality: str) -> tuple[str, ...]:
    """Names of the options ``modality``'s loader accepts (beyond ``train`` and ``config``)."""
    from ...modalities import get

    return get(modality).loader.options
