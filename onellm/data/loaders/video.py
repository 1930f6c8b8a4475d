"""Video loader (spec §3.2, the ImageBind recipe) -> (clips * crops, 3, S, S) float32.

Frame choice reproduces pytorchvideo exactly: ``ConstantClipsPerVideoSampler(clip_duration=1)`` starts clip k
at ``k * max(D - 1, 0) / clips`` seconds (D = n_frames / avg_fps, decord's duration), ``EncodedVideoDecord
.get_clip`` maps a time t to frame ``ceil(t * fps)`` (the first frame whose timestamp i / fps is >= t) and
``UniformTemporalSubsample(1)`` keeps the first frame of the clip. The index is clamped to the last frame.
Only those frames are decoded. Then per frame: /255, ``ShortSideScale(S)`` (bilinear, long side floored),
CLIP normalisation, and ``SpatialCrop(S, num_crops=3)`` (left/centre/right, or top/centre/bottom for portrait
frames). Output order is clip-major: clip 0's crops, clip 1's crops, ... Train and eval are identical.

Decoding uses decord; ``backend="auto"`` falls back to PyAV when decord is missing or fails on the file.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .sources import opened
from .image import clip_normalize

VideoBackend = Literal["auto", "decord", "av"]
EXTENSIONS: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv")


def clip_frame_indices(n_frames: int, fps: float, clips: int) -> list[int]:
    """Index of the first frame of each 1-s clip, exactly as pytorchvideo computes it."""
    duration = n_frames / fps
    step = Fraction(max(duration - 1, 0)) / clips  # Fraction arithmetic as in ConstantClipsPerVideoSampler
    return [min(math.ceil(fps * float(step * k)), n_frames - 1) for k in range(clips)]


def _check_meta(path: str | Path, n_frames: int, fps: float) -> None:
    if n_frames <= 0:
        raise InputError(path, "video has no frames")
    if not fps > 0 or not math.isfinite(fps):
        raise InputError(path, f"video has an invalid frame rate ({fps})")


def _decode_decord(path: str | Path, clips: int) -> np.ndarray:
    """Decode the clip frames with decord -> (clips, H, W, 3) uint8."""
    import decord

    reader = decord.VideoReader(opened(path), ctx=decord.cpu(0))
    n_frames, fps = len(reader), float(reader.get_avg_fps())
    _check_meta(path, n_frames, fps)
    return reader.get_batch(clip_frame_indices(n_frames, fps, clips)).asnumpy()


def _count_frames_av(path: str | Path) -> int:
    """Count video packets when the container does not store a frame count (no decoding)."""
    import av

    with av.open(opened(path, fresh=True)) as container:  # while the decoding container is still open
        return sum(1 for packet in container.demux(video=0) if packet.size > 0)


def _decode_av(path: str | Path, clips: int) -> np.ndarray:
    """Decode the clip frames with PyAV -> (clips, H, W, 3) uint8; decodes up to the last needed frame."""
    import av

    with av.open(opened(path)) as container:
        if not container.streams.video:
            raise InputError(path, "video has no frames (no video stream)")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        n_frames = stream.frames or _count_frames_av(path)
        _check_meta(path, n_frames, fps)
        wanted = clip_frame_indices(n_frames, fps, clips)
        wanted_set, stop = set(wanted), max(wanted)
        frames: dict[int, np.ndarray] = {}
        last = None
        for index, frame in enumerate(container.decode(stream)):  # presentation order, like decord
            if index in wanted_set:  # convert only the frames we keep
                frames[index] = last = frame.to_ndarray(format="rgb24")
            if index >= stop:
                break
    if last is None:
        raise InputError(path, "video has no decodable frames")
    # A container may announce more frames than it holds: missing indices reuse the last decoded frame.
    return np.stack([frames.get(i, last) for i in wanted])


def _decode(path: str | Path, clips: int, backend: VideoBackend) -> np.ndarray:
    if backend not in ("auto", "decord", "av"):
        raise ValueError(f"unknown video backend {backend!r}; expected 'auto', 'decord' or 'av'")
    errors = []
    for name, fn in (("decord", _decode_decord), ("av", _decode_av)):
        if backend not in ("auto", name):
            continue
        try:
            return fn(path, clips)
        except InputError:
            raise
        except ImportError as exc:
            errors.append(f"{name} not available ({exc})")
        except Exception as exc:  # decoder errors: keep their message
            errors.append(f"{name}: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")
    raise InputError(path, "cannot decode video: " + "; ".join(errors))


def short_side_scale(frames: torch.Tensor, size: int) -> torch.Tensor:
    """pytorchvideo ``ShortSideScale``: (N, C, H, W) -> short side ``size``, long side floored, bilinear."""
    h, w = frames.shape[-2:]
    if w < h:
        new_h, new_w = int(math.floor(h / w * size)), size
    else:
        new_h, new_w = size, int(math.floor(w / h * size))
    return F.interpolate(frames, size=(new_h, new_w), mode="bilinear", align_corners=False)


def spatial_crops(frames: torch.Tensor, size: int, num_crops: int) -> torch.Tensor:
    """pytorchvideo ``SpatialCrop``: (N, C, H, W) -> (N * num_crops, C, size, size), clip-major."""
    if num_crops not in (1, 3):
        raise ValueError(f"video_crops must be 1 or 3 (pytorchvideo SpatialCrop), got {num_crops}")
    h, w = frames.shape[-2:]
    crops = []
    for spatial_idx in ((1,) if num_crops == 1 else (0, 1, 2)):
        y, x = math.ceil((h - size) / 2), math.ceil((w - size) / 2)
        if h > w:  # portrait: top / centre / bottom
            y = {0: 0, 1: y, 2: h - size}[spatial_idx]
        else:  # landscape or square: left / centre / right
            x = {0: 0, 1: x, 2: w - size}[spatial_idx]
        crops.append(frames[:, :, y:y + size, x:x + size])
    return torch.stack(crops, dim=1).flatten(0, 1)  # (N, crops, C, S, S) -> (N * crops, C, S, S)


def load_video(path: str | Path, *, size: int, clips: int, crops: int,
               backend: VideoBackend = "auto") -> torch.Tensor:
    """Load a video -> (clips * crops, 3, size, size) float32 (default 15 = 5 clips x 3 crops)."""
    raw = _decode(path, clips, backend)  # (clips, H, W, 3) uint8
    frames = torch.from_numpy(raw).permute(0, 3, 1, 2).float() / 255.0  # (clips, 3, H, W)
    frames = clip_normalize(short_side_scale(frames, size))
    return spatial_crops(frames, size, crops).contiguous()
