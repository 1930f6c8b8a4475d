"""onellm.data.audio_dsp (plain torch) against torchaudio 2.11, which it replaces in the loaders."""
import math

import numpy as np
import pytest
import torch
import torchaudio

from onellm.data import audio_dsp
from onellm.data.loaders import audio as audio_loader
from onellm.data.loaders import imu as imu_loader


def _waveforms():
    g = torch.Generator().manual_seed(3)
    t = torch.arange(16000 * 2) / 16000
    chirp = torch.sin(2 * math.pi * (200 + 1800 * t) * t)[None] * 0.5
    speechlike = (torch.sin(2 * math.pi * 150 * t) * (1 + torch.sin(2 * math.pi * 3 * t)) * 0.3
                  + 0.05 * torch.randn(t.shape, generator=g))[None]
    stereo = torch.stack([torch.sin(2 * math.pi * 440 * t[:12345]), torch.randn(12345, generator=g) * 0.1])
    return {
        "noise": torch.randn(1, 16000, generator=g) * 0.2,
        "uniform_odd_length": torch.rand(1, 7777, generator=g) * 2 - 1,
        "one_frame": torch.randn(1, 400, generator=g),
        "chirp": chirp,
        "speechlike": speechlike,
        "stereo_reads_channel0": stereo,
        "dc_and_tone": 0.7 + 0.1 * torch.sin(2 * math.pi * 1000 * t[:9000])[None],
        "near_silence": torch.randn(1, 5000, generator=g) * 1e-6,
    }


@pytest.mark.parametrize("mel_bins", [32, 64, 128])
def test_fbank_equals_torchaudio_kaldi(mel_bins):
    for name, wave in _waveforms().items():
        ref = torchaudio.compliance.kaldi.fbank(
            wave, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
            num_mel_bins=mel_bins, dither=0.0, frame_shift=10)
        got = audio_dsp.kaldi_fbank(wave, mel_bins)
        assert got.shape == ref.shape, name
        assert got.dtype == ref.dtype
        assert (got - ref).abs().max().item() <= 1e-5, name


def test_fbank_float64_and_mel_banks():
    wave = _waveforms()["speechlike"].double()
    ref = torchaudio.compliance.kaldi.fbank(wave, htk_compat=True, use_energy=False, window_type="hanning",
                                            num_mel_bins=64, dither=0.0, frame_shift=10)
    got = audio_dsp.kaldi_fbank(wave, 64)
    assert got.dtype == torch.float64 and (got - ref).abs().max().item() <= 1e-10
    ref_banks, _ = torchaudio.compliance.kaldi.get_mel_banks(128, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
    assert torch.equal(audio_dsp.mel_banks(128, 512, 16000.0), ref_banks)


def test_fbank_rejects_short_and_bad_shapes():
    with pytest.raises(ValueError, match="shorter than one 400-sample frame"):
        audio_dsp.kaldi_fbank(torch.zeros(1, 399), 32)
    with pytest.raises(ValueError, match="channels, samples"):
        audio_dsp.kaldi_fbank(torch.zeros(400), 32)


RATE_PAIRS = [(8000, 16000), (44100, 16000), (22050, 16000), (48000, 16000), (11025, 16000), (16000, 8000),
              (100, 200), (333, 200), (50, 200), (1000, 200), (201, 200)]


@pytest.mark.parametrize("orig,new", RATE_PAIRS)
def test_resample_equals_torchaudio(orig, new):
    g = torch.Generator().manual_seed(orig + new)
    n = max(orig // 3, 37)
    t = torch.arange(n) / orig
    x = torch.stack([torch.randn(n, generator=g), torch.sin(2 * math.pi * (orig / 7) * t),
                     torch.sign(torch.sin(2 * math.pi * 3 * t))])  # (3, n): noise, tone, square
    for dtype in (torch.float32, torch.float64):
        xi = x.to(dtype)
        ref = torchaudio.functional.resample(xi, orig, new)
        got = audio_dsp.resample(xi, orig, new)
        assert got.shape == ref.shape and got.dtype == ref.dtype
        assert (got - ref).abs().max().item() <= 1e-5, (orig, new, dtype)
    # batched leading axes and the identity case
    xb = x.reshape(1, 3, n)
    assert audio_dsp.resample(xb, orig, new).shape == torchaudio.functional.resample(xb, orig, new).shape
    assert audio_dsp.resample(x, orig, orig) is x


def test_resample_kernel_matches():
    from torchaudio.functional.functional import _get_sinc_resample_kernel

    for orig, new in [(441, 160), (3, 2), (1, 2)]:
        gcd = math.gcd(orig, new)
        for dtype in (None, torch.float32, torch.float64):
            ref, w_ref = _get_sinc_resample_kernel(orig, new, gcd, dtype=dtype)
            got, w = audio_dsp.sinc_resample_kernel(orig, new, dtype)
            assert w == w_ref and torch.equal(got, ref)


def test_resample_errors():
    with pytest.raises(ValueError, match="integers"):
        audio_dsp.resample(torch.zeros(1, 100), 44100.5, 16000)
    with pytest.raises(TypeError, match="floating point"):
        audio_dsp.resample(torch.zeros(1, 100, dtype=torch.int64), 100, 200)


@pytest.mark.parametrize("shape", [(1, 32, 128), (1, 64, 512), (2, 1, 16, 40), (16, 40)])
def test_masks_identical_to_torchaudio_under_same_seed(shape):
    spec = torch.randn(shape)
    for seed in range(25):
        for width in (1, 3, 12, 48):
            torch.manual_seed(seed)
            ref = torchaudio.transforms.TimeMasking(width)(torchaudio.transforms.FrequencyMasking(width)(spec))
            ref_next = torch.rand(3)  # the RNG stream continues identically too
            torch.manual_seed(seed)
            got = audio_dsp.time_mask(audio_dsp.frequency_mask(spec, width), width)
            assert torch.equal(got, ref), (seed, width)
            assert torch.equal(torch.rand(3), ref_next)
    assert audio_dsp.frequency_mask(spec, 0) is spec


def test_masks_draw_widths_below_param():
    spec = torch.ones(1, 20, 50)
    widths = set()
    for seed in range(200):
        torch.manual_seed(seed)
        masked = audio_dsp.frequency_mask(spec, 5)
        rows = int((masked[0, :, 0] == 0).sum())
        widths.add(rows)
        zero_rows = (masked[0] == 0).all(dim=1)
        assert int(zero_rows.sum()) == rows  # whole rows, contiguous
        if rows:
            idx = torch.nonzero(zero_rows).flatten()
            assert int(idx[-1] - idx[0]) + 1 == rows
    assert widths == {0, 1, 2, 3, 4}


# ------------------------------------------------------------------------------------------------------------
# the loaders: bit for bit the torchaudio path they had before
def _reference_load_audio(path, train, mel_bins, frames):
    """onellm.data.loaders.audio.load_audio as it was with torchaudio."""
    waveform, rate = audio_loader.read_waveform(path)
    if rate != 16000:
        waveform = torchaudio.functional.resample(waveform, rate, 16000)
    waveform = waveform - waveform.mean()
    fbank = torchaudio.compliance.kaldi.fbank(
        waveform, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
        num_mel_bins=mel_bins, dither=0.0, frame_shift=10)
    pad = frames - fbank.shape[0]
    fbank = torch.nn.functional.pad(fbank, (0, 0, 0, pad)) if pad > 0 else fbank[:frames]
    spec = fbank.T.unsqueeze(0)
    if train:
        fw, tw = audio_loader.scaled_mask_widths(mel_bins, frames)
        spec = torchaudio.transforms.FrequencyMasking(fw)(spec)
        spec = torchaudio.transforms.TimeMasking(tw)(spec)
    return ((spec - audio_loader.FBANK_MEAN) / (audio_loader.FBANK_STD * 2)).contiguous()


@pytest.mark.parametrize("rate", [16000, 44100, 22050, 8000])
def test_load_audio_matches_torchaudio_path(tmp_path, rate):
    import soundfile

    rng = np.random.default_rng(rate)
    n = int(rate * 1.3)
    tone = 0.4 * np.sin(np.arange(n) / rate * 2 * np.pi * 523) + 0.05 * rng.standard_normal(n)
    path = tmp_path / f"a{rate}.wav"
    soundfile.write(path, np.stack([tone, -tone * 0.5], 1).astype(np.float32), rate)
    for train in (False, True):
        for mel_bins, frames in ((32, 128), (64, 512)):
            torch.manual_seed(11)
            got = audio_loader.load_audio(path, train=train, mel_bins=mel_bins, frames=frames)
            torch.manual_seed(11)
            ref = _reference_load_audio(path, train, mel_bins, frames)
            assert got.shape == (1, mel_bins, frames)
            assert (got - ref).abs().max().item() <= 1e-5
            if rate == 16000:  # no resampling: the same float operations, bit for bit
                assert torch.equal(got, ref)


@pytest.mark.parametrize("rate", [100, 333, 50, 1000])
def test_load_imu_resample_matches_torchaudio(tmp_path, rate):
    rng = np.random.default_rng(rate)
    signal = rng.standard_normal((6, rate * 3)).astype(np.float32)
    np.save(tmp_path / "m.npy", signal)
    got = imu_loader.load_imu(tmp_path / "m.npy", length=400, target_rate=200, channels=6, rate=rate)
    ref = torchaudio.functional.resample(torch.from_numpy(signal), rate, 200)
    ref = torch.nn.functional.pad(ref, (0, 400 - ref.shape[1])) if ref.shape[1] < 400 else ref[:, :400]
    assert got.shape == (6, 400)
    assert (got - ref).abs().max().item() <= 1e-5


def test_no_onellm_module_imports_torchaudio_or_torchvision():
    import pathlib

    import onellm

    root = pathlib.Path(onellm.__file__).parent
    offenders = []
    for f in root.rglob("*.py"):
        for line in f.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import torchaudio", "from torchaudio", "import torchvision", "from torchvision")):
                offenders.append(f"{f.relative_to(root)}: {s}")
    assert not offenders, offenders
