"""fMRI loader (spec §3.6) -> (1, voxels) float32, the mean over repetitions of an NSD ``nsdgeneral`` beta.

Also home of :func:`read_npy`, the checked ``.npy`` reader the point and IMU loaders share.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .sources import opened

EXTENSIONS: tuple[str, ...] = (".npy",)


def read_npy(path: str | Path) -> np.ndarray:
    """``np.load`` without pickles; decoder errors and non-numeric arrays become :class:`InputError`."""
    try:
        array = np.load(opened(path), allow_pickle=False)
    except Exception as exc:
        raise InputError(path, f"cannot read .npy file: {exc}") from exc
    if not isinstance(array, np.ndarray):  # an .npz archive saved under a .npy name
        raise InputError(path, f"expected a single array, found {type(array).__name__}")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InputError(path, f"expected a real-valued numeric array, got dtype {array.dtype}")
    return array


def load_fmri(path: str | Path, *, voxels: int) -> torch.Tensor:
    """Load (R, V) repetitions or a single (V,) response -> (1, V) float32 mean over repetitions."""
    data = read_npy(path)
    if data.ndim not in (1, 2) or data.size == 0:
        raise InputError(path, f"expected fMRI of shape (repetitions, {voxels}) or ({voxels},), "
                               f"got {tuple(data.shape)}")
    if data.shape[-1] != voxels:
        raise InputError(path, f"fMRI has {data.shape[-1]} voxels but the model expects {voxels}")
    if not np.isfinite(data).all():
        raise InputError(path, "fMRI contains NaN or infinite values")
    mean = data.mean(axis=0) if data.ndim == 2 else data  # (V,) average the repetitions as the original
    return torch.from_numpy(np.asarray(mean, dtype=np.float32)[None])  # (1, V)
