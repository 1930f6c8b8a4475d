"""Audio loader (spec §3.3, ``make_audio_features``) -> kaldi fbank (1, mel_bins, frames) float32.

Files are read with soundfile (WAV/FLAC/OGG/MP3), then PyAV (m4a/AAC/...), because ``torchaudio.load`` needs
torchcodec. Resampling, the fbank and the masks are torchaudio's, re-implemented in plain torch
(:mod:`onellm.data.audio_dsp`), so the loader also runs where torchaudio is absent (the vLLM environment).
As in the original: resample the whole (C, T) waveform to 16 kHz, subtract its global mean, take
the kaldi fbank (which reads channel 0), zero-pad/truncate to ``frames``, apply SpecAugment masks in train
(before normalisation), normalise with the AudioSet statistics and transpose to (1, mel_bins, frames).

Mask widths are the original's 48 mel bins / 192 frames at 128 x 1024, scaled proportionally (rounded, at
least 1) for smaller geometries so a tiny config masks the same fraction of the spectrogram.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..audio_dsp import frequency_mask, kaldi_fbank, resample, time_mask
from ..errors import InputError
from .sources import opened

SAMPLE_RATE = 16000
FBANK_MEAN, FBANK_STD = -4.2677393, 4.5689974  # AudioSet statistics of the AST recipe
FREQ_MASK, TIME_MASK = 48, 192  # SpecAugment widths at the original 128 mel bins x 1024 frames
WINDOW_SAMPLES = 400  # one 25 ms kaldi frame at 16 kHz: anything shorter yields no fbank frame
EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".aac", ".opus", ".wma", ".aiff", ".aif")


def _read_soundfile(path: str | Path) -> tuple[np.ndarray, int]:
    import soundfile

    data, rate = soundfile.read(opened(path), dtype="float32", always_2d=True)  # (T, C)
    return data.T, int(rate)  # (C, T)


def _read_av(path: str | Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(opened(path)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")  # planar float32, same layout and rate
        chunks = [f.to_ndarray() for frame in container.decode(stream) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray() for f in resampler.resample(None)]  # flush
        rate = int(stream.rate or stream.codec_context.sample_rate)
    if not chunks:
        return np.zeros((1, 0), np.float32), rate
    return np.concatenate(chunks, axis=1), rate  # (C, T)


def read_waveform(path: str | Path) -> tuple[torch.Tensor, int]:
    """Decode an audio file -> ((C, T) float32 in [-1, 1], sample rate)."""
    errors = []
    for name, reader in (("soundfile", _read_soundfile), ("PyAV", _read_av)):
        try:
            data, rate = reader(path)
            return torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)), rate
        except Exception as exc:
            errors.append(f"{name}: {str(exc).strip() or type(exc).__name__}")
    raise InputError(path, "cannot decode audio: " + "; ".join(errors))


def scaled_mask_widths(mel_bins: int, frames: int) -> tuple[int, int]:
    """SpecAugment widths for this geometry: the original (48, 192) at 128 x 1024, scaled proportionally."""
    return max(1, round(FREQ_MASK * mel_bins / 128)), max(1, round(TIME_MASK * frames / 1024))


def fbank_features(waveform: torch.Tensor, mel_bins: int) -> torch.Tensor:
    """The original's kaldi fbank of a 16 kHz (C, T) waveform (channel 0) -> (n_frames, mel_bins)."""
    # = torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000, use_energy=False,
    #   window_type="hanning", num_mel_bins=mel_bins, dither=0.0, frame_shift=10), in plain torch (audio_dsp)
    return kaldi_fbank(waveform, mel_bins, sample_frequency=SAMPLE_RATE, frame_shift=10.0)


def waveform_features(waveform: torch.Tensor, rate: int, *, train: bool, mel_bins: int, frames: int,
                      source: str | Path | None = None) -> torch.Tensor:
    """A decoded (C, T) waveform at ``rate`` -> (1, mel_bins, frames) float32 normalised fbank (every step of
    :func:`load_audio` after the file is read; ``source`` names the input in errors). Arrays that never were files
    (an lmms-eval audio dict, a gradio recording) use it directly."""
    if waveform.numel() == 0:
        raise InputError(source, "audio is empty (no samples)")
    if not torch.isfinite(waveform).all():
        raise InputError(source, "audio contains NaN or infinite samples")
    if rate <= 0:
        raise InputError(source, f"invalid sample rate {rate}")
    if rate != SAMPLE_RATE:
        waveform = resample(waveform, rate, SAMPLE_RATE)
    if waveform.shape[1] < WINDOW_SAMPLES:
        raise InputError(source, f"audio too short: {waveform.shape[1]} samples at 16 kHz, "
                                 f"need at least {WINDOW_SAMPLES} (one 25 ms frame)")
    waveform = waveform - waveform.mean()  # global mean over all channels, as the original
    fbank = fbank_features(waveform, mel_bins)  # (n_frames, mel_bins)
    pad = frames - fbank.shape[0]
    fbank = torch.nn.functional.pad(fbank, (0, 0, 0, pad)) if pad > 0 else fbank[:frames]  # (frames, mel_bins)
    spec = fbank.T.unsqueeze(0)  # (1, mel_bins, frames)
    if train:
        freq_width, time_width = scaled_mask_widths(mel_bins, frames)
        spec = frequency_mask(spec, freq_width)  # = torchaudio FrequencyMasking(freq_width), same RNG draws
        spec = time_mask(spec, time_width)  # = torchaudio TimeMasking(time_width)
    return ((spec - FBANK_MEAN) / (FBANK_STD * 2)).contiguous()


def load_audio(path: str | Path, *, train: bool, mel_bins: int, frames: int) -> torch.Tensor:
    """Load an audio file -> (1, mel_bins, frames) float32 normalised fbank."""
    waveform, rate = read_waveform(path)  # (C, T)
    return waveform_features(waveform, rate, train=train, mel_bins=mel_bins, frames=frames, source=path)
