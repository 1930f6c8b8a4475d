"""Video: clips x spatial crops frames through CLIP's patch embedding, averaged after CLIP (spec §1.4, §3.2)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.loaders.formats import VIDEO_FILES
from .base import ClipPatches, LoaderSpec, ModalityDefinition, SynthSpec
from .synth_common import COLOURS


@dataclass
class VideoInputs:
    clips: int = 5  # uniformly spaced frames
    crops: int = 3  # spatial crops per frame (left/centre/right or top/centre/bottom)

    @property
    def frames(self) -> int:
        return self.clips * self.crops


def load(path: Path, *, train: bool, config, backend: str = "auto") -> "torch.Tensor":
    # The original has no video augmentation: train and eval are identical.
    from ..data.loaders.video import load_video

    inputs = config.inputs.video
    return load_video(path, size=config.vision.image_size, clips=inputs.clips, crops=inputs.crops, backend=backend)


def write_sample(root: Path, stem: str, i: int, a: dict, rng, inputs) -> dict:
    """A coloured ball moving along a path, as H.264 MP4."""
    from ..data.synth.render import VIDEO_FPS, ball_frames, write_mp4

    rel = f"{stem}.mp4"
    write_mp4(root / rel, ball_frames(rng, a["colour"], a["motion"]), VIDEO_FPS)
    return {"modality": "video", "path": rel}


VIDEO = ModalityDefinition(
    name="video",
    encoder_input=ClipPatches(stacked=True),
    input_shape=lambda config: (config.inputs.video.frames, 3, config.vision.image_size, config.vision.image_size),
    loader=LoaderSpec(load, VIDEO_FILES, options=("backend",),
                      option_help={"backend": "video decoder: auto (decord, PyAV fallback), decord or av"},
                      decoded="frames", augments=False),
    caption_prompt="Provide a one-sentence caption for the provided video.",
    noun="video",
    input_config=VideoInputs,
    legacy_input_fields={"video_clips": "clips", "video_crops": "crops"},
    synth=SynthSpec(
        attributes={"colour": COLOURS, "motion": ("horizontally", "vertically", "in a circle", "still")},
        captions=("a {colour} ball {motion}", "a video of a {colour} ball {motion}",
                  "a {colour} ball {motion} on a grey background"),
        questions={"colour": "What colour is the ball?", "motion": "How is the ball moving?"},
        phrases={"motion": {"horizontally": "moving horizontally", "vertically": "moving vertically",
                            "in a circle": "moving in a circle", "still": "standing still"}},
        write=write_sample, stream=1),
    demo_kind="video",
)
