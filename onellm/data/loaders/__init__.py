"""Per-modality input loaders: a file (or a manifest input dict) -> the model's input tensor (spec §1.4, §3).

``load_modality(modality, source, train=False, config=None, **options)`` returns float32 tensors
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

import os
from pathlib import Path
from typing import Any, Callable

import torch

from ...config import OneLLMConfig
from ...modality import Modality
from ..errors import InputError
from . import audio, fmri, image, imu, paired, point, video

__all__ = ["load_modality", "supported_extensions", "option_names"]

Loader = Callable[..., torch.Tensor]


def _image(path: Path, train: bool, cfg: OneLLMConfig) -> torch.Tensor:
    return image.load_image(path, train=train, size=cfg.vision.image_size)


def _video(path: Path, train: bool, cfg: OneLLMConfig, backend: video.VideoBackend = "auto") -> torch.Tensor:
    # The original has no video augmentation: train and eval are identical.
    return video.load_video(path, size=cfg.vision.image_size, clips=cfg.inputs.video_clips,
                            crops=cfg.inputs.video_crops, backend=backend)


def _audio(path: Path, train: bool, cfg: OneLLMConfig) -> torch.Tensor:
    return audio.load_audio(path, train=train, mel_bins=cfg.inputs.audio_mel_bins, frames=cfg.inputs.audio_frames)


def _point(path: Path, train: bool, cfg: OneLLMConfig) -> torch.Tensor:
    return point.load_point(path, train=train, num_points=cfg.inputs.point_num_points)


def _paired(path: Path, train: bool, cfg: OneLLMConfig, rgb: str | Path | None = None) -> torch.Tensor:
    return paired.load_paired(path, rgb=rgb, train=train, size=cfg.vision.image_size)


def _imu(path: Path, train: bool, cfg: OneLLMConfig, timestamps: str | Path | None = None,
         start: float | None = None, end: float | None = None, rate: int | None = None) -> torch.Tensor:
    return imu.load_imu(path, length=cfg.inputs.imu_length, target_rate=cfg.inputs.imu_rate,
                        channels=cfg.inputs.imu_channels, timestamps=timestamps, start=start, end=end, rate=rate)


def _fmri(path: Path, train: bool, cfg: OneLLMConfig) -> torch.Tensor:
    return fmri.load_fmri(path, voxels=cfg.inputs.fmri_voxels)


# modality -> (loader, its option names, accepted file extensions)
_REGISTRY: dict[Modality, tuple[Loader, tuple[str, ...], tuple[str, ...]]] = {
    Modality.IMAGE: (_image, (), image.EXTENSIONS),
    Modality.VIDEO: (_video, ("backend",), video.EXTENSIONS),
    Modality.AUDIO: (_audio, (), audio.EXTENSIONS),
    Modality.POINT: (_point, (), point.EXTENSIONS),
    Modality.DEPTH: (_paired, ("rgb",), paired.EXTENSIONS),
    Modality.NORMAL: (_paired, ("rgb",), paired.EXTENSIONS),
    Modality.IMU: (_imu, ("timestamps", "start", "end", "rate"), imu.EXTENSIONS),
    Modality.FMRI: (_fmri, (), fmri.EXTENSIONS),
}


def supported_extensions(modality: Modality | str) -> tuple[str, ...]:
    """File extensions (lower case, with the dot) that ``modality``'s loader reads."""
    return _REGISTRY[Modality.parse(modality)][2]


def option_names(modality: Modality | str) -> tuple[str, ...]:
    """Names of the options ``modality``'s loader accepts (beyond ``train`` and ``config``)."""
    return _REGISTRY[Modality.parse(modality)][1]


def _split_source(modality: Modality, source: str | os.PathLike | dict) -> tuple[Path, dict[str, Any]]:
    """A path, or a manifest input ``{"modality", "path", <options>}`` -> (path, options of the dict)."""
    if not isinstance(source, dict):
        return Path(source), {}
    entry = dict(source)
    path = entry.pop("path", None)
    if path is None or str(path) == "":
        raise InputError(None, f"manifest input {source!r} has no 'path'")
    named = entry.pop("modality", None)
    if named is not None:
        try:
            named = Modality.parse(named)
        except ValueError as exc:
            raise InputError(path, str(exc)) from None
        if named != modality:
            raise InputError(path, f"manifest input is a {named} input but was loaded as {modality}")
    return Path(path), entry


def load_modality(modality: Modality | str, source: str | os.PathLike | dict, train: bool = False,
                  config: OneLLMConfig | None = None, **options: Any) -> torch.Tensor:
    """Load one input file as the model's float32 input tensor for ``modality`` (shapes in the module doc).

    Args:
        modality: a :class:`Modality` or its name (``rgbd``/``rgbn`` aliases accepted).
        source: a file path, or a manifest input dict ``{"modality": ..., "path": ..., <options>}`` whose
            relative paths the caller has already resolved; explicit ``options`` override the dict's.
        train: apply the original training augmentations (torch's global RNG).
        config: geometry of the inputs; defaults to the ``onellm-7b`` preset.
        **options: per-modality options (module doc); ``None`` means "not given".
    Raises:
        InputError: missing, unsupported, unreadable or malformed input (``str`` names the file).
    """
    modality = Modality.parse(modality)
    loader, allowed, extensions = _REGISTRY[modality]
    path, merged = _split_source(modality, source)
    merged.update({k: v for k, v in options.items() if v is not None})
    merged = {k: v for k, v in merged.items() if v is not None}
    unknown = sorted(set(merged) - set(allowed))
    if unknown:
        raise InputError(path, f"unknown option(s) {', '.join(unknown)} for {modality} inputs; "
                               f"supported: {', '.join(allowed) or 'none'}")
    if path.suffix.lower() not in extensions:
        raise InputError(path, f"unsupported file extension {path.suffix!r} for {modality} inputs; "
                               f"supported: {', '.join(extensions)}")
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a regular file")
    try:
        tensor = loader(path, train, config or OneLLMConfig.preset("onellm-7b"), **merged)
    except InputError:
        raise
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError) as exc:
        # Safety net: a decoder error no loader anticipated still names the file.
        raise InputError(path, f"cannot load {modality} input: {exc}") from exc
    return tensor.float()
