"""The synthetic world: attribute vocabularies, caption / question templates and attribute scoring.

Every modality has exactly two attributes, each with a small closed vocabulary (``ATTRIBUTES``). A caption
template names every attribute value (through ``PHRASES`` where a value needs surrounding words, e.g.
``"near"`` -> ``"near the camera"``), so a caption can be scored by looking for the true values in it
(:func:`attribute_accuracy`). Values are chosen so that no value is a whole word of another value of the same
modality ("in a circle" is a video motion; "circle" is never a video attribute).
"""
from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Mapping

import numpy as np

from ...modality import MODALITY_SPECS, Modality

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")

# modality -> attribute -> values (the order of attributes is the order they appear in manifests)
ATTRIBUTES: dict[str, dict[str, tuple[str, ...]]] = {
    "image": {"colour": COLOURS, "shape": ("circle", "square", "triangle")},
    "video": {"colour": COLOURS, "motion": ("horizontally", "vertically", "in a circle", "still")},
    "audio": {"pitch": ("low", "middle", "high"), "pattern": ("steady", "beeping")},
    "point": {"shape": ("sphere", "cube", "cone", "torus"), "colour": COLOURS},
    "depth": {"shape": ("sphere", "cube", "cone"), "distance": ("near", "far")},
    "normal": {"shape": ("sphere", "cube", "cone"), "colour": COLOURS},
    "imu": {"activity": ("walking", "running", "standing"), "turning": ("left", "right", "straight")},
    "fmri": {"colour": COLOURS, "shape": ("circle", "square", "triangle")},
}

# Words around a value inside captions ("{motion}" in a template is replaced by the phrase of the value).
PHRASES: dict[str, dict[str, dict[str, str]]] = {
    "video": {"motion": {"horizontally": "moving horizontally", "vertically": "moving vertically",
                         "in a circle": "moving in a circle", "still": "standing still"}},
    "depth": {"distance": {"near": "near the camera", "far": "far from the camera"}},
    "imu": {"turning": {"left": "turning left", "right": "turning right", "straight": "heading straight"}},
}

# 2-3 caption templates per modality; every template names every attribute.
CAPTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "image": ("a {colour} {shape}", "a picture of a {colour} {shape}", "a {colour} {shape} on a grey background"),
    "video": ("a {colour} ball {motion}", "a video of a {colour} ball {motion}", "a {colour} ball {motion} "
              "on a grey background"),
    "audio": ("a {pitch} {pattern} tone", "a {pattern} tone with a {pitch} pitch", "the sound of a {pitch}, "
              "{pattern} tone"),
    "point": ("a {colour} {shape}", "a 3D model of a {colour} {shape}", "a point cloud of a {colour} {shape}"),
    "depth": ("a {shape}, {distance_value}", "a {shape} {distance}", "a {shape} standing on the ground {distance}"),
    "normal": ("a {colour} {shape}", "a {colour} {shape} on the ground", "a rendering of a {colour} {shape}"),
    "imu": ("{activity} and {turning}", "a person {activity} and {turning}", "someone {activity}, {turning}"),
    "fmri": ("a {colour} {shape}", "an image of a {colour} {shape}", "a {colour} {shape} on a grey background"),
}

# One question per attribute; the answer is the bare value.
QUESTIONS: dict[str, dict[str, str]] = {
    "image": {"colour": "What colour is the shape?", "shape": "What shape is shown?"},
    "video": {"colour": "What colour is the ball?", "motion": "How is the ball moving?"},
    "audio": {"pitch": "Is the tone high, middle or low?", "pattern": "Is the tone steady or beeping?"},
    "point": {"shape": "What shape is the object?", "colour": "What colour is the object?"},
    "depth": {"shape": "What shape is the object?", "distance": "Is the object near or far?"},
    "normal": {"shape": "What shape is the object?", "colour": "What colour is the object?"},
    "imu": {"activity": "Is the person walking, running or standing?",
            "turning": "Is the person turning left, turning right or going straight?"},
    "fmri": {"colour": "What colour was the shape the subject saw?", "shape": "What shape did the subject see?"},
}

NOUNS: dict[str, str] = {"image": "image", "video": "video", "audio": "audio clip", "point": "point cloud",
                         "depth": "depth map", "normal": "normal map", "imu": "IMU recording",
                         "fmri": "fMRI recording"}


def caption_requests(modality: str) -> tuple[str, ...]:
    """The caption-request phrasings of a modality; the first is the one used by ``requests.jsonl``."""
    noun = NOUNS[modality]
    return (f"Describe this {noun}.", MODALITY_SPECS[Modality(modality)].default_prompt,
            f"What is in this {noun}?")


def combinations(modality: str) -> list[dict[str, str]]:
    """Every attribute combination of a modality, in lexicographic order of the value indices."""
    names = list(ATTRIBUTES[modality])
    return [dict(zip(names, values)) for values in itertools.product(*ATTRIBUTES[modality].values())]


def balanced_assignments(modality: str, n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """``n`` attribute dicts that cycle through all combinations, shuffled with ``rng``.

    Full cycles hold every combination once. For the last, partial cycle each pick is the unused
    combination whose values are so far the rarest, so every attribute's value counts differ by at most 1.
    """
    combos = combinations(modality)
    uses = [0] * len(combos)
    counts: dict[str, dict[str, int]] = {a: dict.fromkeys(v, 0) for a, v in ATTRIBUTES[modality].items()}
    picked: list[dict[str, str]] = []
    for _ in range(n):  # loop over samples to assign (not over signal values)
        least = min(uses)
        best = min((k for k in range(len(combos)) if uses[k] == least),
                   key=lambda k: sum(counts[a][v] for a, v in combos[k].items()))
        uses[best] += 1
        for a, v in combos[best].items():
            counts[a][v] += 1
        picked.append(dict(combos[best]))
    order = rng.permutation(n)
    return [picked[i] for i in order]


def caption(modality: str, attributes: Mapping[str, str], template: int = 0) -> str:
    """Fill caption template number ``template`` (modulo the template count) with the attributes."""
    templates = CAPTION_TEMPLATES[modality]
    fields: dict[str, str] = {}
    for name, value in attributes.items():
        fields[name] = PHRASES.get(modality, {}).get(name, {}).get(value, value)
        fields[f"{name}_value"] = value
    return templates[template % len(templates)].format(**fields)


@lru_cache(maxsize=None)
def _pattern(value: str) -> re.Pattern[str]:
    # Word boundaries at both ends; inner spaces of multi-word values match any run of whitespace.
    words = r"\s+".join(re.escape(w) for w in value.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def names_value(text: str, value: str) -> bool:
    """Whether ``text`` names ``value`` as a whole word / phrase (case-insensitive)."""
    return _pattern(value).search(text) is not None


def attribute_accuracy(caption: str, attributes: Mapping[str, str], modality: str | None = None) -> float:
    """Fraction of the true attribute values named in ``caption`` (word-boundary, case-insensitive).

    With ``modality`` the score is strict: an attribute only counts when no OTHER value of its vocabulary is
    named too, so a caption that lists every colour cannot score on colour.
    """
    if not attributes:
        return 0.0
    vocab = ATTRIBUTES[str(Modality.parse(modality))] if modality is not None else {}
    hits = 0
    for name, value in attributes.items():
        ok = names_value(caption, value)
        if ok and modality is not None:
            others = [v for v in vocab[name] if v != value]
            ok = not any(names_value(caption, v) for v in others)
        hits += ok
    return hits / len(attributes)


def chance_level(modality: str) -> float:
    """Expected attribute accuracy of a caption naming one uniformly random value per attribute."""
    vocab = ATTRIBUTES[str(Modality.parse(modality))]
    return float(np.mean([1.0 / len(values) for values in vocab.values()]))


def corpus_lines() -> list[str]:
    """Every sentence the world can produce (captions of all combinations and templates, questions, requests,
    answers): the text a tiny tokenizer or language model for this world is trained on."""
    lines: list[str] = []
    for modality in ATTRIBUTES:
        for attrs in combinations(modality):
            lines += [caption(modality, attrs, k) for k in range(len(CAPTION_TEMPLATES[modality]))]
            lines += list(attrs.values())
        lines += list(QUESTIONS[modality].values()) + list(caption_requests(modality))
    return lines
