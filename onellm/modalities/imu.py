"""IMU: 6-channel accelerometer + gyroscope windows at 200 Hz, tokenised by its own Conv1d (spec §1.4, §3.6)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.loaders.formats import ARRAY_FILES
from .base import LoaderSpec, ModalityDefinition, OwnTokenizer, SynthSpec

SYNTH_WINDOW_S = 2.0  # length of the window a synthetic IMU request asks for


@dataclass
class IMUInputs:
    """(channels, length) at ``rate`` Hz; Conv1d(channels, D, kernel, stride) -> (length - kernel) // stride + 1
    tokens (391 with the released stride 1; small presets stride over time to cut the CLIP sequence)."""

    channels: int = 6
    length: int = 400
    kernel: int = 10
    stride: int = 1
    rate: int = 200

    @property
    def tokens(self) -> int:
        return (self.length - self.kernel) // self.stride + 1


def build_tokenizer(config):
    from ..model.token_layers import Conv1dTokenizer

    imu = config.inputs.imu
    return Conv1dTokenizer(imu.channels, config.dim, kernel_size=imu.kernel, stride=imu.stride, bias=False)


def load(path: Path, *, train: bool, config, timestamps: str | Path | None = None, start: float | None = None,
         end: float | None = None, rate: int | None = None) -> "torch.Tensor":
    from ..data.loaders.imu import load_imu

    imu = config.inputs.imu
    return load_imu(path, length=imu.length, target_rate=imu.rate, channels=imu.channels, timestamps=timestamps,
                    start=start, end=end, rate=None if rate is None else int(rate))


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A 4-4.5 s recording with its millisecond timestamps; the request cuts a 2-s window out of it."""
    import numpy as np

    from ..data.synth.signals import imu_recording

    seconds = round(float(rng.uniform(4.0, 4.5)), 2)
    signal, stamps = imu_recording(rng, a["activity"], a["turning"], seconds)
    # A 2-s window starting on a 50-ms grid, at least 0.25 s from both ends of the recording.
    start = round(0.05 * int(rng.integers(5, int((seconds - SYNTH_WINDOW_S - 0.25) / 0.05) + 1)), 2)
    rel, rel_ts = f"{stem}.npy", f"{stem}_timestamps.npy"
    np.save(root / rel, signal)
    np.save(root / rel_ts, stamps)
    return {"modality": "imu", "path": rel, "timestamps": rel_ts, "start": start,
            "end": round(start + SYNTH_WINDOW_S, 2)}


IMU = ModalityDefinition(
    name="imu",
    encoder_input=OwnTokenizer(build=build_tokenizer, num_tokens=lambda config: config.inputs.imu.tokens),
    input_shape=lambda config: (config.inputs.imu.channels, config.inputs.imu.length),
    loader=LoaderSpec(load, ARRAY_FILES, options=("timestamps", "start", "end", "rate"),
                      path_options=("timestamps",), number_options=("start", "end", "rate"),
                      option_help={"timestamps": "IMU timestamps (.npy, milliseconds)",
                                   "start": "window start (s)", "end": "window end (s)",
                                   "rate": "sample rate (Hz) when there are no timestamps"},
                      augments=False),
    caption_prompt="Describe the motion.",
    noun="IMU recording",
    input_config=IMUInputs,
    legacy_input_fields={"imu_channels": "channels", "imu_length": "length", "imu_kernel": "kernel",
                         "imu_stride": "stride", "imu_rate": "rate"},
    synth=SynthSpec(
        attributes={"activity": ("walking", "running", "standing"), "turning": ("left", "right", "straight")},
        captions=("{activity} and {turning}", "a person {activity} and {turning}", "someone {activity}, {turning}"),
        questions={"activity": "Is the person walking, running or standing?",
                   "turning": "Is the person turning left, turning right or going straight?"},
        phrases={"turning": {"left": "turning left", "right": "turning right", "straight": "heading straight"}},
        write=write_sample, stream=6),
    demo_kind="signal",
)
