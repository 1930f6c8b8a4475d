"""The eight OneLLM modalities and what distinguishes them inside the model.

Everywhere in the code a modality is a :class:`Modality` (a ``str`` enum, so ``Modality("audio")`` parses the
name used in manifests and configs). ``MODALITY_SPECS`` records, per modality, how its input reaches the shared
CLIP encoder (spec §1.4):

* ``clip_patch_embed``: the input is an image (or a stack of images) tokenised by CLIP's own frozen ``conv1``
  and positioned with CLIP's frozen positional embedding (image, video, depth, normal). The other modalities
  have their own trainable tokenizer and learned positional embedding.
* ``frames``: how many images the default loader stacks per input; the model averages CLIP outputs over them
  (video: 5 clips x 3 crops = 15; depth/normal: [RGB, map] = 2). The model accepts any frame count.
* ``official_name``: the key used by the released checkpoint (``rgbd``/``rgbn`` for depth/normal).
* ``default_prompt``: the evaluation prompt of the original scripts (spec §5) for captioning requests.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Modality(str, enum.Enum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    POINT = "point"
    DEPTH = "depth"
    NORMAL = "normal"
    IMU = "imu"
    FMRI = "fmri"

    def __str__(self) -> str:  # "audio", not "Modality.AUDIO", in logs and file names
        return self.value

    @classmethod
    def parse(cls, name: "str | Modality") -> "Modality":
        """Parse a modality name; also accepts the official aliases ``rgbd``/``rgbn``."""
        if isinstance(name, Modality):
            return name
        key = str(name).strip().lower()
        key = _ALIASES.get(key, key)
        try:
            return cls(key)
        except ValueError:
            valid = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown modality {name!r}; expected one of: {valid}") from None


_ALIASES = {"rgbd": "depth", "rgbn": "normal", "pointcloud": "point", "points": "point"}


@dataclass(frozen=True)
class ModalitySpec:
    clip_patch_embed: bool
    frames: int
    official_name: str
    default_prompt: str


MODALITY_SPECS: dict[Modality, ModalitySpec] = {
    Modality.IMAGE: ModalitySpec(True, 1, "image", "Provide a one-sentence caption for the provided image."),
    Modality.VIDEO: ModalitySpec(True, 15, "video", "Provide a one-sentence caption for the provided video."),
    Modality.AUDIO: ModalitySpec(False, 1, "audio", "Provide a one-sentence caption for the provided audio."),
    Modality.POINT: ModalitySpec(False, 1, "point", "Provide a one-sentence caption for the provided point cloud."),
    Modality.DEPTH: ModalitySpec(True, 2, "rgbd", "Provide a one-sentence caption for the provided depth map."),
    Modality.NORMAL: ModalitySpec(True, 2, "rgbn", "Provide a one-sentence caption for the provided normal map."),
    Modality.IMU: ModalitySpec(False, 1, "imu", "Describe the motion."),
    Modality.FMRI: ModalitySpec(False, 1, "fmri", "Describe the scene based on fMRI data."),
}

ALL_MODALITIES: tuple[Modality, ...] = tuple(Modality)
# Modalities whose tokenizer is a module of their own (the others reuse CLIP's frozen patch embedding).
OWN_TOKENIZER_MODALITIES: tuple[Modality, ...] = tuple(m for m in Modality if not MODALITY_SPECS[m].clip_patch_embed)
