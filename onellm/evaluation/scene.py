"""Zero-shot scene classification labels (NYUv2, SUN RGB-D; paper Tab. 6) and the rule that scores a free answer.

The model answers "{Class List} What is the category of this scene? Choice one class from the class sets." in free
text, so an answer must be mapped back to a class. The released OneLLM code has no depth / normal evaluation ("TODO"
in its docs), hence no rule to copy; this is ours, written down in docs/evaluation.md#scene-rule:

1. Normalise: lower case, ``_`` and punctuation -> space ("Living-room." -> "living room").
2. Every class has surface forms: its name, the label set's synonyms for it (``hallway`` for SUN RGB-D's
   ``corridor``, ``lecture theater`` for ``lecture_theatre``, ...), and the plural of each (``-s``, ``-es``, ``-y``
   -> ``-ies``: ``libraries`` is ``library``). NYUv2's ``others`` is, as in the 10-class protocol that folds every
   other NYU scene type into it, also named by "other(s)" and by any of those folded NYU scene types (``foyer``,
   ``study room``, ``office kitchen``, ...).
3. Find every surface form as whole words; a mention inside a longer one is dropped ("office" inside "home office"
   or "office kitchen", "room" inside anything).
4. The answer is right when the classes left are exactly the label: extra words are fine ("It is a bedroom."), an
   answer that names several classes ("bedroom or kitchen") is wrong, and so is one naming none.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["SceneLabels", "NYUV2", "SUNRGBD", "normalise_answer", "plural_forms"]

# Other names of a class that mean the same scene; shared by the label sets (each uses the entries of its classes).
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "bathroom": ("bath room", "restroom", "washroom"),
    "bedroom": ("bed room",),
    "bookstore": ("book store", "bookshop", "book shop"),
    "classroom": ("class room",),
    "computer_room": ("computer lab", "computer laboratory"),
    "conference_room": ("meeting room",),
    "corridor": ("hallway",),
    "furniture_store": ("furniture shop",),
    "lab": ("laboratory",),
    "lecture_theatre": ("lecture theater", "lecture hall"),
    "living_room": ("livingroom",),
    "rest_space": ("rest area",),
    "study_space": ("study area", "study room"),
}

# The 27 scene types of the NYU Depth V2 labelled set (``sceneTypes`` of nyu_depth_v2_labeled.mat, as the 27-class
# NYUD scene lists of public code spell them; "excercise" is NYU's spelling). The 10-class protocol (Omnivore /
# ImageBind) keeps 9 of them and folds the other 18 into "others".
NYU_SCENE_TYPES = ("basement", "bathroom", "bedroom", "bookstore", "cafe", "classroom", "computer_lab",
                   "conference_room", "dinette", "dining_room", "excercise_room", "foyer", "furniture_store",
                   "home_office", "home_storage", "indoor_balcony", "kitchen", "laundry_room", "living_room",
                   "office", "office_kitchen", "playroom", "printer_room", "reception_room", "student_lounge",
                   "study", "study_room")

_PUNCT = re.compile(r"[^\w\s]|_")
_VOWELS = set("aeiou")


def normalise_answer(text: str) -> str:
    """Lower case, ``_`` / punctuation -> space, single spaces."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def plural_forms(word: str) -> tuple[str, ...]:
    """``word`` and its regular plurals: +s, +es, consonant-y -> -ies (``library`` -> ``libraries``)."""
    forms = [word, word + "s", word + "es"]
    if len(word) > 1 and word.endswith("y") and word[-2] not in _VOWELS:
        forms.append(word[:-1] + "ies")
    return tuple(forms)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    *head, last = normalise_answer(phrase).split()
    tail = "|".join(re.escape(f) for f in sorted(plural_forms(last), key=len, reverse=True))
    body = "".join(re.escape(w) + " " for w in head) + f"(?:{tail})"
    return re.compile(rf"(?<![a-z0-9]){body}(?![a-z0-9])")


@dataclass(frozen=True)
class SceneLabels:
    """A benchmark's scene classes and the names that count as each.

    ``other_class``: the catch-all class of the protocol (NYUv2 ``others``), named by "other(s)" and by every
    ``other_types`` entry (the dataset's own scene types the protocol folds into it)."""

    name: str
    classes: tuple[str, ...]
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    other_class: str | None = None
    other_types: tuple[str, ...] = ()

    def with_classes(self, classes: Sequence[str]) -> "SceneLabels":
        """The same rules for another class list (a dataset's ``classes.txt``); unknown classes get only their
        name and its plurals."""
        classes = tuple(classes)
        other = self.other_class if self.other_class in classes else None
        return SceneLabels(self.name, classes, {c: s for c, s in self.synonyms.items() if c in classes}, other,
                           tuple(t for t in self.other_types if t not in classes) if other else ())

    def surface_forms(self) -> list[tuple[str, str]]:
        """(phrase, class) for every way of naming a class, names with spaces (``living room``)."""
        forms = []
        for c in self.classes:
            names = [c, *self.synonyms.get(c, ())]
            if c == self.other_class:
                names += ["other", *self.other_types]
            forms += [(normalise_answer(n), c) for n in names]
        return forms

    def named(self, answer: str) -> set[str]:
        """The classes ``answer`` names (step 3 of the module docstring)."""
        text = normalise_answer(answer)
        spans = [(m.start(), m.end(), cls) for phrase, cls in self.surface_forms()
                 for m in _phrase_pattern(phrase).finditer(text)]
        return {cls for s, e, cls in spans
                if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) for s2, e2, _ in spans)}

    def verdict(self, answer: str, label: str) -> bool:
        """True when ``answer`` names ``label`` and no other class."""
        if label not in self.classes:
            raise ValueError(f"{self.name}: label {label!r} is not a class ({', '.join(self.classes)})")
        return self.named(answer) == {label}


# NYUv2, 10-class protocol (Omnivore / ImageBind): the 9 most frequent scene types + "others".
NYUV2 = SceneLabels(
    name="nyuv2",
    classes=("bedroom", "kitchen", "living_room", "bathroom", "dining_room", "office", "home_office", "classroom",
             "bookstore", "others"),
    synonyms={c: SYNONYMS[c] for c in ("bathroom", "bedroom", "bookstore", "classroom", "living_room")},
    other_class="others",
    other_types=tuple(t for t in NYU_SCENE_TYPES if t not in {"bedroom", "kitchen", "living_room", "bathroom",
                                                                "dining_room", "office", "home_office", "classroom",
                                                                "bookstore"}))

# SUN RGB-D: the 19 scene categories with more than 80 images (Song et al., CVPR 2015); no catch-all class.
SUNRGBD = SceneLabels(
    name="sunrgbd",
    classes=("bathroom", "bedroom", "classroom", "computer_room", "conference_room", "corridor", "dining_area",
             "dining_room", "discussion_area", "furniture_store", "home_office", "kitchen", "lab", "lecture_theatre",
             "library", "living_room", "office", "rest_space", "study_space"),
    synonyms={c: s for c, s in SYNONYMS.items() if c != "bookstore"})
