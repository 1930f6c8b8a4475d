"""Audio: a kaldi fbank tokenised by its own Conv2d into a frequency x time grid (spec §1.4, §3.3)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.loaders.formats import AUDIO_FILES
from .base import LoaderSpec, ModalityDefinition, OwnTokenizer, SynthSpec


@dataclass
class AudioInputs:
    """(1, mel_bins, frames) fbank; Conv2d(1, D, kernel, stride) -> F' x T' tokens (12 x 101 at 7B)."""

    mel_bins: int = 128
    frames: int = 1024
    kernel: int = 16
    stride: int = 10

    @property
    def grid(self) -> tuple[int, int]:
        f = (self.mel_bins - self.kernel) // self.stride + 1
        t = (self.frames - self.kernel) // self.stride + 1
        return f, t


def build_tokenizer(config):
    from ..model.token_layers import Conv2dTokenizer

    inputs = config.inputs.audio
    return Conv2dTokenizer(1, config.dim, kernel_size=inputs.kernel, stride=inputs.stride)


def num_tokens(config) -> int:
    f, t = config.inputs.audio.grid
    return f * t


def load(path: Path, *, train: bool, config) -> "torch.Tensor":
    from ..data.loaders.audio import load_audio

    inputs = config.inputs.audio
    return load_audio(path, train=train, mel_bins=inputs.mel_bins, frames=inputs.frames)


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A steady, beeping or fading tone at one of three pitches, as 16-bit WAV."""
    import soundfile

    from ..data.synth.signals import AUDIO_RATE, tone

    rel = f"{stem}.wav"
    soundfile.write(str(root / rel), tone(rng, a["pitch"], a["pattern"]), AUDIO_RATE,
                    subtype="PCM_16", format="WAV")
    return {"modality": "audio", "path": rel}


AUDIO = ModalityDefinition(
    name="audio",
    encoder_input=OwnTokenizer(build=build_tokenizer, num_tokens=num_tokens),
    input_shape=lambda config: (1, config.inputs.audio.mel_bins, config.inputs.audio.frames),
    loader=LoaderSpec(load, AUDIO_FILES, decoded="waveform"),
    caption_prompt="Provide a one-sentence caption for the provided audio.",
    noun="audio clip",
    input_config=AudioInputs,
    legacy_input_fields={"audio_mel_bins": "mel_bins", "audio_frames": "frames", "audio_kernel": "kernel",
                         "audio_stride": "stride"},
    synth=SynthSpec(
        attributes={"pitch": ("low", "middle", "high"), "pattern": ("steady", "beeping", "fading")},
        captions=("a {pitch} {pattern} tone", "a {pattern} tone with a {pitch} pitch",
                  "the sound of a {pitch}, {pattern} tone"),
        questions={"pitch": "Is the tone high, middle or low?", "pattern": "Is the tone steady, beeping or fading?"},
        write=write_sample, stream=2),
    demo_kind="audio",
)
