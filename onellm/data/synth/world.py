"""The synthetic world: attribute vocabularies, caption / question templates and attribute scoring.

Each modality's part of the world lives in its definition (``SynthSpec`` in ``onellm/modalities/<name>.py``): two
attributes, each with a small closed vocabulary, caption templates that name every value (through ``phrases``
where a value needs surrounding words, e.g. ``"near"`` -> ``"near the camera"``), so a caption can be scored by
looking for the true values in it (:func:`attribute_accuracy`), and one question per attribute. Values are chosen
so that no value is a whole word of another value of the same modality ("in a circle" is a video motion; "circle"
is never a video attribute). ``ATTRIBUTES`` / ``QUESTIONS`` are live read-only views over the registry.
"""
from __future__ import annotations

import itertools
import re
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import numpy as np

from ...modalities import get as modality_definition
from ...modalities import names as registered_modalities

def _synth(modality: str):
    """The synthetic-world part of a modality's definition; ValueError if it has none."""
    definition = modality_definition(modality)
    if definition.synth is None:
        raise ValueError(f"modality {definition.name!r} has no synthetic-world generator")
    return definition.synth


def attributes(modality: str) -> dict[str, tuple[str, ...]]:
    """attribute -> values of a modality (the order of attributes is the order they appear in manifests)."""
    return dict(_synth(modality).attributes)


def caption_templates(modality: str) -> tuple[str, ...]:
    """The caption templates of a modality (each names every attribute)."""
    return tuple(_synth(modality).captions)


def questions(modality: str) -> dict[str, str]:
    """attribute -> the question whose answer is the bare value."""
    return dict(_synth(modality).questions)


def world_modalities() -> list[str]:
    """Every registered modality that has a synthetic-world generator, in registry order."""
    return [m for m in registered_modalities() if modality_definition(m).synth is not None]


class _RegistryView(Mapping):
    """modality -> ``read(modality)`` for every modality of the world (follows later registrations)."""

    def __init__(self, read):
        self._read = read

    def __getitem__(self, modality: str):
        if modality not in world_modalities():
            raise KeyError(modality)
        return self._read(modality)

    def __iter__(self):
        return iter(world_modalities())

    def __len__(self) -> int:
        return len(world_modalities())


ATTRIBUTES: Mapping[str, dict[str, tuple[str, ...]]] = _RegistryView(attributes)
QUESTIONS: Mapping[str, dict[str, str]] = _RegistryView(questions)


def caption_requests(modality: str) -> tuple[str, ...]:
    """The caption-request phrasings of a modality; the first is the one used by ``requests.jsonl``."""
    definition = modality_definition(modality)
    noun = definition.noun
    return (f"Describe this {noun}.", definition.caption_prompt, f"What is in this {noun}?")


def conversation(modality: str, attrs: Mapping[str, str], asked: Sequence[str | None],
                 caption_turn: Callable[[], tuple[str, str]]) -> list[dict[str, str]]:
    """LLaVA-style turns asking ``asked`` in that order: an attribute name -> its question and the bare value; None
    -> ``caption_turn()``'s (caption request, caption), drawn when its turn comes (callers' random streams)."""
    questions = _synth(modality).questions
    turns = []
    for name in asked:
        question, answer = caption_turn() if name is None else (questions[name], attrs[name])
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    return turns


def combinations(modality: str) -> list[dict[str, str]]:
    """Every attribute combination of a modality, in lexicographic order of the value indices."""
    vocab = attributes(modality)
    return [dict(zip(vocab, values)) for values in itertools.product(*vocab.values())]


def balanced_assignments(modality: str, n: int, rng: np.random.Generator) -> list[dict[str, str]]:
    """``n`` attribute dicts that cycle through all combinations, shuffled with ``rng``.

    Full cycles hold every combination once. For the last, partial cycle each pick is the unused
    combination whose values are so far the rarest, so every attribute's value counts differ by at most 1.
    """
    combos = combinations(modality)
    uses = [0] * len(combos)
    counts: dict[str, dict[str, int]] = {a: dict.fromkeys(v, 0) for a, v in attributes(modality).items()}
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


def caption(modality: str, values: Mapping[str, str], template: int = 0) -> str:
    """Fill caption template number ``template`` (modulo the template count) with the attributes."""
    synth = _synth(modality)
    templates = synth.captions
    fields: dict[str, str] = {}
    for name, value in values.items():
        fields[name] = synth.phrases.get(name, {}).get(value, value)
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


def attribute_accuracy(caption: str, values: Mapping[str, str], modality: str | None = None) -> float:
    """Fraction of the true attribute values named in ``caption`` (word-boundary, case-insensitive).

    With ``modality`` the score is strict: an attribute only counts when no OTHER value of its vocabulary is
    named too, so a caption that lists every colour cannot score on colour.
    """
    if not values:
        return 0.0
    vocab = attributes(modality) if modality is not None else {}
    hits = 0
    for name, value in values.items():
        ok = names_value(caption, value)
        if ok and modality is not None:
            others = [v for v in vocab[name] if v != value]
            ok = not any(names_value(caption, v) for v in others)
        hits += ok
    return hits / len(values)


def chance_level(modality: str) -> float:
    """Expected attribute accuracy of a caption naming one uniformly random value per attribute."""
    vocab = attributes(modality)
    return float(np.mean([1.0 / len(values) for values in vocab.values()]))


def corpus_lines() -> list[str]:
    """Every sentence the world can produce (captions of all combinations and templates, questions, requests,
    answers): the text a tiny tokenizer or language model for this world is trained on."""
    lines: list[str] = []
    for modality in world_modalities():
        for attrs in combinations(modality):
            lines += [caption(modality, attrs, k) for k in range(len(caption_templates(modality)))]
            lines += list(attrs.values())
        lines += list(questions(modality).values()) + list(caption_requests(modality))
    return lines
