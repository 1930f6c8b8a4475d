"""Audio signal processing in plain torch: kaldi fbank, sinc resampling and SpecAugment masks.

These reproduce, operation for operation, what the OneLLM loaders used from torchaudio 2.11
(``compliance.kaldi.fbank``, ``functional.resample``, ``transforms.FrequencyMasking`` / ``TimeMasking``), so
that no onellm module needs torchaudio: the vLLM environment cannot have it (its PyPI builds are CUDA builds
that do not import beside a CPU torch). ``tests/test_audio_dsp.py`` holds them equal to torchaudio.

* :func:`kaldi_fbank` is ``torchaudio.compliance.kaldi.fbank`` restricted to the options OneLLM uses
  (the original ``make_audio_features``): ``htk_compat=True, use_energy=False, window_type="hanning",
  dither=0, frame_shift=10, frame_length=25, sample_frequency=16000`` and the kaldi defaults
  ``preemphasis_coefficient=0.97, remove_dc_offset=True, round_to_power_of_two=True, snip_edges=True,
  low_freq=20, high_freq=0 (Nyquist), use_power=True, use_log_fbank=True``, no VTLN. With
  ``use_energy=False`` the energy column is never emitted, so ``htk_compat`` (which only moves it) and
  ``raw_energy`` / ``energy_floor`` have no effect on the output.
* :func:`resample` is ``torchaudio.functional.resample`` with ``sinc_interp_hann``, ``lowpass_filter_width=6``,
  ``rolloff=0.99``: a windowed-sinc polyphase FIR applied as a strided ``conv1d``.
* :func:`frequency_mask` / :func:`time_mask` are ``FrequencyMasking(p)`` / ``TimeMasking(p)`` (``iid_masks=False``):
  two ``torch.rand(1)`` draws each from torch's global RNG, in the same order, so a seed gives the same masks.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["kaldi_fbank", "mel_banks", "resample", "sinc_resample_kernel", "mask_along_axis", "frequency_mask",
           "time_mask"]

# numeric_limits<float>::epsilon(), kaldi's floor before the log
_EPSILON = torch.finfo(torch.float).eps


# ------------------------------------------------------------------------------------------------------------
# kaldi fbank
def _next_power_of_2(x: int) -> int:
    return 1 if x == 0 else 2 ** (x - 1).bit_length()


def _mel_scale(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * (1.0 + freq / 700.0).log()


def _mel_scale_scalar(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


def mel_banks(num_bins: int, padded_window_size: int, sample_freq: float, low_freq: float = 20.0,
              high_freq: float = 0.0) -> torch.Tensor:
    """kaldi's triangular mel filter bank without VTLN -> (num_bins, padded_window_size // 2) float32.

    The arithmetic (and its float32 / float64 mix) is torchaudio's ``get_mel_banks`` with ``vtln_warp=1``."""
    if num_bins <= 3:
        raise ValueError(f"kaldi fbank needs more than 3 mel bins, got {num_bins}")
    num_fft_bins = padded_window_size / 2
    nyquist = 0.5 * sample_freq
    if high_freq <= 0.0:
        high_freq += nyquist
    if not (0.0 <= low_freq < nyquist and 0.0 < high_freq <= nyquist and low_freq < high_freq):
        raise ValueError(f"bad mel range: low {low_freq} Hz, high {high_freq} Hz, Nyquist {nyquist} Hz")
    fft_bin_width = sample_freq / padded_window_size
    mel_low, mel_high = _mel_scale_scalar(low_freq), _mel_scale_scalar(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)  # (num_bins, 1) int64
    left = mel_low + b * delta  # (num_bins, 1) float32
    center = mel_low + (b + 1.0) * delta
    right = mel_low + (b + 2.0) * delta
    mel = _mel_scale(fft_bin_width * torch.arange(num_fft_bins)).unsqueeze(0)  # (1, num_fft_bins)
    up = (mel - left) / (center - left)  # (num_bins, num_fft_bins)
    down = (right - mel) / (right - center)
    return torch.max(torch.zeros(1), torch.min(up, down))


def _frames(waveform: torch.Tensor, window_size: int, window_shift: int) -> torch.Tensor:
    """snip_edges framing: (n,) -> (m, window_size) view, m = 1 + (n - window_size) // window_shift."""
    n = waveform.shape[0]
    if n < window_size:
        return torch.empty((0, 0), dtype=waveform.dtype, device=waveform.device)
    m = 1 + (n - window_size) // window_shift
    stride = waveform.stride(0)
    return waveform.as_strided((m, window_size), (window_shift * stride, stride))


def kaldi_fbank(waveform: torch.Tensor, num_mel_bins: int, sample_frequency: float = 16000.0,
                frame_length: float = 25.0, frame_shift: float = 10.0,
                preemphasis_coefficient: float = 0.97, low_freq: float = 20.0,
                high_freq: float = 0.0) -> torch.Tensor:
    """Log mel filter bank energies of channel 0 of a (C, T) waveform -> (n_frames, num_mel_bins).

    Equal to ``torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=..., use_energy=False,
    window_type="hanning", num_mel_bins=..., dither=0.0, frame_shift=..., frame_length=...)`` (module doc)."""
    if waveform.dim() != 2 or waveform.shape[0] < 1:
        raise ValueError(f"expected a (channels, samples) waveform, got shape {tuple(waveform.shape)}")
    device, dtype = waveform.device, waveform.dtype
    wave = waveform[0, :]  # (n,) kaldi reads channel 0
    window_shift = int(sample_frequency * frame_shift * 0.001)
    window_size = int(sample_frequency * frame_length * 0.001)
    padded = _next_power_of_2(window_size)  # round_to_power_of_two
    if not 2 <= window_size <= wave.shape[0]:
        raise ValueError(f"waveform of {wave.shape[0]} samples is shorter than one {window_size}-sample frame")
    x = _frames(wave, window_size, window_shift)  # (m, window_size)
    x = x - torch.mean(x, dim=1).unsqueeze(1)  # remove_dc_offset
    if preemphasis_coefficient != 0.0:  # x[i, j] -= c * x[i, max(0, j - 1)]
        shifted = F.pad(x.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)  # (m, window_size + 1)
        x = x - preemphasis_coefficient * shifted[:, :-1]
    window = torch.hann_window(window_size, periodic=False, device=device, dtype=dtype).unsqueeze(0)
    x = x * window  # (m, window_size)
    if padded != window_size:
        x = F.pad(x.unsqueeze(0), (0, padded - window_size), mode="constant", value=0).squeeze(0)  # (m, padded)
    power = torch.fft.rfft(x).abs().pow(2.0)  # (m, padded // 2 + 1)
    banks = mel_banks(num_mel_bins, padded, sample_frequency, low_freq, high_freq).to(device=device, dtype=dtype)
    banks = F.pad(banks, (0, 1), mode="constant", value=0)  # (num_mel_bins, padded // 2 + 1)
    energies = torch.mm(power, banks.T)  # (m, num_mel_bins)
    return torch.max(energies, torch.tensor(_EPSILON, device=device, dtype=dtype)).log()


# ------------------------------------------------------------------------------------------------------------
# resampling
def sinc_resample_kernel(orig_freq: int, new_freq: int, dtype: torch.dtype | None = None,
                         device: torch.device | str = "cpu", lowpass_filter_width: int = 6,
                         rolloff: float = 0.99) -> tuple[torch.Tensor, int]:
    """Hann-windowed sinc kernel (new, 1, 2 * width + orig) of the gcd-reduced rates, and its half width."""
    if int(orig_freq) != orig_freq or int(new_freq) != new_freq:
        raise ValueError(f"resampling rates must be integers, got {orig_freq} and {new_freq}")
    if lowpass_filter_width <= 0:
        raise ValueError("lowpass_filter_width must be positive")
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    base_freq = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base_freq)
    idx_dtype = dtype if dtype is not None else torch.float64
    idx = torch.arange(-width, width + orig, dtype=idx_dtype, device=device)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=dtype, device=device)[:, None, None] / new + idx
    t *= base_freq
    t = t.clamp_(-lowpass_filter_width, lowpass_filter_width)
    window = torch.cos(t * math.pi / lowpass_filter_width / 2) ** 2
    t *= math.pi
    scale = base_freq / orig
    kernels = torch.where(t == 0, torch.tensor(1.0).to(t), t.sin() / t)
    kernels *= window * scale
    if dtype is None:
        kernels = kernels.to(dtype=torch.float32)
    return kernels, width


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
             rolloff: float = 0.99) -> torch.Tensor:
    """Band-limited resampling of (..., time) from ``orig_freq`` to ``new_freq`` Hz (integers) ->
    (..., ceil(time * new / orig)); equal to ``torchaudio.functional.resample`` (sinc_interp_hann)."""
    if orig_freq <= 0 or new_freq <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_freq} and {new_freq}")
    if orig_freq == new_freq:
        return waveform
    if not waveform.is_floating_point():
        raise TypeError(f"resample needs a floating point waveform, got {waveform.dtype}")
    kernel, width = sinc_resample_kernel(orig_freq, new_freq, waveform.dtype, waveform.device,
                                         lowpass_filter_width, rolloff)
    gcd = math.gcd(int(orig_freq), int(new_freq))
    orig, new = int(orig_freq) // gcd, int(new_freq) // gcd
    shape = waveform.size()
    x = waveform.reshape(-1, shape[-1])  # (B, T)
    num, length = x.shape
    x = F.pad(x, (width, width + orig))  # (B, T + 2 * width + orig)
    out = F.conv1d(x[:, None], kernel, stride=orig)  # (B, new, frames)
    out = out.transpose(1, 2).reshape(num, -1)  # (B, frames * new), interleaved phases
    target = int(torch.ceil(torch.as_tensor(new * length / orig)).long())
    out = out[..., :target]
    return out.view(shape[:-1] + out.shape[-1:])  # (..., target)


# ------------------------------------------------------------------------------------------------------------
# SpecAugment
def mask_along_axis(spec: torch.Tensor, mask_param: int, mask_value: float, axis: int) -> torch.Tensor:
    """One mask of width ~ U[0, mask_param) at a random start along ``axis`` (one of the last two axes), shared
    by every leading index; ``torchaudio.functional.mask_along_axis`` with p = 1 (same RNG draws)."""
    dim = spec.dim()
    if dim < 2:
        raise ValueError(f"a spectrogram needs at least 2 dimensions, got {dim}")
    if axis < 0:
        axis += dim
    if axis not in (dim - 2, dim - 1):
        raise ValueError(f"only the last two axes can be masked, got axis {axis} of a {dim}-D tensor")
    if mask_param < 1:
        return spec
    shape = spec.size()
    x = spec.reshape([-1] + list(shape[-2:]))  # (B, F, T)
    local = axis - dim + 3
    value = torch.rand(1) * mask_param
    min_value = torch.rand(1) * (x.size(local) - value)
    start = min_value.long().squeeze()
    end = (min_value.long() + value.long()).squeeze()
    pos = torch.arange(0, x.shape[local], device=x.device, dtype=x.dtype)
    mask = (pos >= start) & (pos < end)
    if axis == dim - 2:
        mask = mask.unsqueeze(-1)  # frequency axis: broadcast over time
    x = x.masked_fill(mask, mask_value)
    return x.reshape(shape[:-2] + x.shape[-2:])


def frequency_mask(spec: torch.Tensor, mask_param: int, mask_value: float = 0.0) -> torch.Tensor:
    """``torchaudio.transforms.FrequencyMasking(mask_param)(spec)`` for (..., freq, time)."""
    return mask_along_axis(spec, mask_param, mask_value, spec.dim() - 2)


def time_mask(spec: torch.Tensor, mask_param: int, mask_value: float = 0.0) -> torch.Tensor:
    """``torchaudio.transforms.TimeMasking(mask_param)(spec)`` for (..., freq, time)."""
    return mask_along_axis(spec, mask_param, mask_value, spec.dim() - 1)
