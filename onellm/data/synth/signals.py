"""1-D signals of the synthetic world: tones (audio), body motion (IMU) and voxel responses (fMRI).

All signals are computed on whole time axes with numpy (no loop over samples).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Audio: a sine tone, steady, gated on/off (beeping) or decaying (fading), plus white noise. 16 kHz mono, 2 s.
AUDIO_RATE, AUDIO_SECONDS = 16000, 2.0
# Tone frequencies: about 7 mel bins apart even with 32 kaldi mel bins (20 Hz .. 8 kHz).
PITCH_HZ: dict[str, float] = {"low": 200.0, "middle": 800.0, "high": 3000.0}
# 1.5 on/off cycles per second: each on and each off stretch lasts 1/3 s = 33 fbank frames, longer than an audio
# token's 16-frame window, so whole tokens are on or off (at 4 Hz every token straddled an edge and beeping
# looked like a dimmer steady tone: the quickstart never learned the pattern). The quickstart's 128 frames (1.28 s)
# hold about two cycles.
BEEP_HZ = 1.5
# Fading: the amplitude falls by 40 dB (x 0.01) over the first 1.28 s, the part the quickstart's 128 frames see.
FADE_DECADES_PER_S = 2.0 / 1.28


def tone(rng: np.random.Generator, pitch: str, pattern: str) -> np.ndarray:
    """A 2-s tone -> (AUDIO_RATE * AUDIO_SECONDS,) float32 in [-1, 1]."""
    t = np.arange(int(AUDIO_RATE * AUDIO_SECONDS)) / AUDIO_RATE
    freq = PITCH_HZ[pitch] * np.exp(rng.uniform(-0.08, 0.08))  # +-8 % jitter
    amp = rng.uniform(0.15, 0.6)
    wave = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    if pattern == "beeping":
        rate = BEEP_HZ * rng.uniform(0.9, 1.1)
        # A square wave with 10-ms soft edges (tanh) so the gating does not click across all mel bins.
        wave *= 0.5 * (1 + np.tanh(20 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))))
    elif pattern == "fading":
        wave *= 10.0 ** (-FADE_DECADES_PER_S * rng.uniform(0.9, 1.1) * t)
    elif pattern != "steady":
        raise ValueError(f"unknown audio pattern {pattern!r}")
    noise = rng.normal(0, amp * rng.uniform(0.005, 0.03), t.shape)
    return np.clip(amp * wave + noise, -1, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# IMU: imu2clip layout (6, T) = acc xyz (m/s^2; x forward, y left, z up) + gyro xyz (rad/s) at 200 Hz.
IMU_RATE = 200
GRAVITY = 9.81
STEP_HZ: dict[str, tuple[float, float]] = {"walking": (1.7, 2.2), "running": (2.7, 3.2), "standing": (0.0, 0.0)}
BOUNCE: dict[str, tuple[float, float]] = {"walking": (1.5, 2.5), "running": (5.0, 7.5), "standing": (0.0, 0.0)}
TURN_RATE = (0.4, 0.8)  # rad/s of yaw (gyro z); left = counter-clockwise seen from above = positive


def imu_recording(rng: np.random.Generator, activity: str, turning: str,
                  seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """A recording -> (signal (6, T) float32, timestamps (T,) float64 in ms), T = seconds * 200."""
    if turning not in ("left", "right", "straight") or activity not in STEP_HZ:
        raise ValueError(f"unknown IMU attributes {activity!r}, {turning!r}")
    n = int(round(seconds * IMU_RATE))
    t = np.arange(n) / IMU_RATE
    step = rng.uniform(*STEP_HZ[activity])
    bounce = rng.uniform(*BOUNCE[activity])
    ph = rng.uniform(0, 2 * np.pi, 6)
    w = 2 * np.pi * step * t
    acc = np.stack([
        0.5 * bounce * np.sin(w + ph[0]),  # forward surge each step
        0.3 * bounce * np.sin(w / 2 + ph[1]),  # lateral sway once per stride (two steps)
        GRAVITY + bounce * np.sin(w + ph[2]) + 0.3 * bounce * np.sin(2 * w + ph[3]),  # vertical bounce
    ])
    sway = 0.12 * bounce  # head pitch / roll rates follow the gait
    yaw = {"left": 1.0, "right": -1.0, "straight": 0.0}[turning] * rng.uniform(*TURN_RATE)
    gyro = np.stack([sway * np.sin(w / 2 + ph[4]), sway * np.sin(w + ph[5]),
                     yaw + 0.5 * sway * np.sin(w / 2 + ph[1]) + np.zeros_like(t)])
    signal = np.concatenate([acc + rng.normal(0, 0.15, acc.shape), gyro + rng.normal(0, 0.03, gyro.shape)])
    timestamps = np.arange(n, dtype=np.float64) * (1000.0 / IMU_RATE)  # exact 5-ms grid: no resampling
    return signal.astype(np.float32), timestamps


# ---------------------------------------------------------------------------------------------------------
# fMRI: voxels = baseline + W @ onehot(colour, shape) + noise, W fixed for the whole world.
WORLD_SEED = 20240617  # constant: train and test splits made with different run seeds share W
FMRI_REPETITIONS = 3
FMRI_NOISE = np.sqrt(2.0)  # signal variance per voxel is 2 (two active one-hot entries): SNR 1 per repetition


@lru_cache(maxsize=4)
def fmri_projection(voxels: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The world's fixed (W (voxels, dims), baseline (voxels,)) float32, from ``WORLD_SEED``."""
    rng = np.random.default_rng([WORLD_SEED, voxels])
    return (rng.standard_normal((voxels, dims)).astype(np.float32),
            (0.5 * rng.standard_normal(voxels)).astype(np.float32))


def onehot(values: dict[str, str], vocab: dict[str, tuple[str, ...]]) -> np.ndarray:
    """Concatenated one-hot codes of the attribute values over their vocabularies -> (sum of sizes,) float32."""
    parts = [np.asarray([v == values[a] for v in options], np.float32) for a, options in vocab.items()]
    return np.concatenate(parts)


def fmri_response(rng: np.random.Generator, values: dict[str, str], voxels: int,
                  vocab: dict[str, tuple[str, ...]]) -> np.ndarray:
    """Repeated responses to a stimulus with attribute ``values`` -> (FMRI_REPETITIONS, voxels) float32."""
    code = onehot(values, vocab)
    w, baseline = fmri_projection(voxels, code.shape[0])
    clean = baseline + w @ code  # (voxels,)
    noise = rng.normal(0, FMRI_NOISE, (FMRI_REPETITIONS, voxels))
    return (clean[None] + noise).astype(np.float32)
