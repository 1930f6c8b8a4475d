"""Vocabularies several modalities of the synthetic world share (``onellm synth``)."""
from __future__ import annotations

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
FLAT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SOLID_SHAPES: tuple[str, ...] = ("sphere", "cube", "cone")
