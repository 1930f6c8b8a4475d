"""IMU loader (spec §3.6, imu2clip ``get_imu_frames``) -> (channels, length) float32 = (6, 400) by default.

The signal is an imu2clip ``.npy`` of shape (6, T) (acc xyz, gyro xyz); (T, 6) is transposed (an array with
both dimensions equal to the channel count is read as (6, T)). With ``timestamps`` (a ``.npy`` of T times in
milliseconds, imu2clip's ``{uid}_timestamps.npy``) the window [start, end] seconds is cut exactly as the
original: rejected when it ends beyond the last timestamp, when a window edge is more than 4 s from the
first sample at or after it, or when it holds fewer than 10 samples; sliced with ``bisect_left``; the rate measured as
``int(1000 / mean(diff(ms)))`` (the original truncates). Without timestamps the samples are taken to be
``rate`` Hz (default ``imu_rate``) from t = 0, the window is ``[ceil(start * rate), ceil(end * rate))`` (the
same ``bisect_left`` rule) and may not reach past the recording. ``rate`` and ``timestamps`` are exclusive.

A window needs ``start``; ``end`` defaults to ``start + length / imu_rate``. Without ``start`` and ``end`` the
whole recording is used. The slice is resampled to ``imu_rate`` when its rate differs
(``torchaudio.functional.resample``, in plain torch: :func:`onellm.data.audio_dsp.resample`), then zero-padded
or truncated to ``length``. Always float32 (§7.17).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..audio_dsp import resample
from ..errors import InputError
from .fmri import read_npy
from .sources import as_source, exists

EXTENSIONS: tuple[str, ...] = (".npy",)
MAX_EDGE_GAP_S = 4.0  # imu2clip: a window edge may lie at most 4 s from its nearest sample
MIN_SAMPLES = 10


def _read_signal(path: Path, channels: int) -> np.ndarray:
    """(C, T) or (T, C) array -> (C, T)."""
    signal = read_npy(path)
    if signal.ndim == 2 and signal.shape[0] != channels and signal.shape[1] == channels:
        signal = signal.T  # (T, C) -> (C, T)
    if signal.ndim != 2 or signal.shape[0] != channels:
        raise InputError(path, f"expected IMU of shape ({channels}, T) or (T, {channels}), got {tuple(signal.shape)}")
    if not np.isfinite(signal).all():
        raise InputError(path, "IMU signal contains NaN or infinite values")
    return signal


def _window_by_timestamps(path: Path, ts_path: Path, signal: np.ndarray, start: float | None,
                          end: float | None) -> tuple[np.ndarray, int]:
    """Cut the window as imu2clip ``get_imu_frames`` -> ((C, T') slice, measured rate in Hz)."""
    ts = read_npy(ts_path).astype(np.float64).reshape(-1)  # (T,) milliseconds
    if ts.shape[0] != signal.shape[1]:
        raise InputError(ts_path, f"{ts.shape[0]} timestamps for {signal.shape[1]} IMU samples in {path.name}")
    if not np.isfinite(ts).all() or (np.diff(ts) < 0).any():
        raise InputError(ts_path, "timestamps must be finite and sorted")
    if start is None:
        lo, hi = 0, len(ts)
    else:
        start_ms, end_ms = start * 1000.0, end * 1000.0
        if start_ms > ts[-1] or end_ms > ts[-1]:
            raise InputError(path, f"window [{start}, {end}] s ends beyond the last IMU timestamp ({ts[-1] / 1000} s)")
        lo, hi = np.searchsorted(ts, [start_ms, end_ms], side="left").tolist()  # bisect_left
        if abs(start - ts[lo] / 1000) > MAX_EDGE_GAP_S or abs(end - ts[hi] / 1000) > MAX_EDGE_GAP_S:
            raise InputError(path, f"window [{start}, {end}] s is more than {MAX_EDGE_GAP_S} s from the samples")
        if lo == hi:  # as the original: widen an empty window by one sample each side
            lo, hi = max(lo - 1, 0), hi + 1
    if hi - lo < MIN_SAMPLES:
        raise InputError(path, f"IMU window holds {hi - lo} samples, fewer than {MIN_SAMPLES}")
    step_ms = np.diff(ts[lo:hi]).mean()
    if not step_ms > 0:
        raise InputError(ts_path, "timestamps of the window do not increase")
    return signal[:, lo:hi], int(1000 * (1 / step_ms))


def _window_by_rate(path: Path, signal: np.ndarray, start: float | None, end: float | None,
                    rate: int) -> np.ndarray:
    """Cut [start, end) seconds from a signal sampled at ``rate`` Hz from t = 0 -> (C, T')."""
    if start is None:
        window = signal
    else:
        duration = signal.shape[1] / rate
        if start < 0 or end > duration + 1e-9:
            raise InputError(path, f"window [{start}, {end}] s lies outside the recording (0 to {duration} s "
                                   f"at {rate} Hz)")
        window = signal[:, math.ceil(start * rate):math.ceil(end * rate)]
    if window.shape[1] < MIN_SAMPLES:
        raise InputError(path, f"IMU window holds {window.shape[1]} samples, fewer than {MIN_SAMPLES}")
    return window


def load_imu(path: str | Path, *, length: int, target_rate: int, channels: int,
             timestamps: str | Path | None = None, start: float | None = None, end: float | None = None,
             rate: int | None = None) -> torch.Tensor:
    """Load an IMU recording window (the signal and its timestamps: paths or named file objects) -> (channels,
    length) float32 at ``target_rate`` Hz."""
    path = as_source(path)
    if start is None and end is not None:
        raise InputError(path, "an IMU window needs 'start' when 'end' is given")
    if start is not None:
        start = float(start)
        end = start + length / target_rate if end is None else float(end)
        if end <= start:
            raise InputError(path, f"IMU window end ({end} s) must be after its start ({start} s)")
    signal = _read_signal(path, channels)  # (C, T)
    if timestamps is not None:
        if rate is not None:
            raise InputError(path, "give either 'timestamps' or 'rate': with timestamps the rate is measured")
        ts_path = as_source(timestamps)
        if not exists(ts_path):
            raise InputError(ts_path, f"IMU timestamps of {path} not found")
        window, measured = _window_by_timestamps(path, ts_path, signal, start, end)
    else:
        measured = target_rate if rate is None else int(rate)
        if measured <= 0 or (rate is not None and float(rate) != measured):
            raise InputError(path, f"IMU rate must be a positive integer number of Hz, got {rate}")
        window = _window_by_rate(path, signal, start, end, measured)
    x = torch.from_numpy(np.ascontiguousarray(window))  # (C, T')
    if x.dtype not in (torch.float32, torch.float64):
        x = x.double()  # ints / float16: resample in double
    if measured != target_rate:
        x = resample(x, measured, target_rate)  # (C, T' * target / measured)
    pad = length - x.shape[1]
    x = torch.nn.functional.pad(x, (0, pad)) if pad > 0 else x[:, :length]  # (C, length)
    return x.float().contiguous()
