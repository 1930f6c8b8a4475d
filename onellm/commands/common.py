"""What several ``onellm`` commands share on the command line, importable without torch (``--help`` stays fast).

Preset names are written out here because ``onellm.config`` imports transformers (seconds); a test holds them
equal to ``OneLLMConfig.presets()``.
"""
from __future__ import annotations

import argparse

PRESETS = ("onellm-7b", "quickstart", "small", "tiny")
DEVICE_HELP = "auto (this rank's GPU when there is one, else the CPU), cpu, cuda, cuda:1 ..."
DTYPE_HELP = "auto (bf16 on a GPU, fp16 on GPUs without bf16, fp32 on a CPU), fp32, bf16 or fp16"
# letters whose spoken name starts with a vowel sound: "an fMRI", "an IMU", "an SVG"
_VOWEL_SOUND_LETTERS = set("aefhilmnorsx")


def article(noun: str) -> str:
    """``"an image"``, ``"an audio clip"``, ``"an IMU recording"``, ``"an fMRI recording"``, ``"a video"``."""
    word = noun.split()[0] if noun.split() else noun
    acronym = len(word) > 1 and any(c.isupper() for c in word[1:])  # IMU, fMRI (spelt out letter by letter)
    vowel = word[:1].lower() in (_VOWEL_SOUND_LETTERS if acronym else set("aeiou"))
    return f"{'an' if vowel else 'a'} {noun}"


def add_device_argument(p: argparse.ArgumentParser, help_text: str = DEVICE_HELP) -> None:
    p.add_argument("--device", default="auto", help=help_text)


def add_dtype_argument(p: argparse.ArgumentParser, help_text: str = DTYPE_HELP) -> None:
    p.add_argument("--dtype", default="auto", help=help_text)
