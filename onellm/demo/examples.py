"""Example inputs for the demo, made from the synthetic world (``onellm synth``) at the model's input geometry.

A fresh ``onellm quickstart`` model was trained on this world, so its examples get real answers; any other model
still gets one working example per modality. For each modality of the model that has a generator, two samples are
written (a ``demo`` split, its own seed, so they are not training samples): the first is asked for a caption (the
world's caption request), the second its first attribute question. A model with video and audio also gets one
example with both inputs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..modalities import get as modality_definition

EXAMPLE_SEED = 2024
PER_MODALITY = 2


@dataclass
class Example:
    """One clickable example: ``inputs`` [(modality, absolute path, loader options)], the question, and the tab
    (modality) it is listed under."""

    tab: str
    question: str
    inputs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    answer: str | None = None  # what the synthetic world says is right


def _absolute(root: Path, modality: str, entry: dict) -> tuple[str, str, dict[str, Any]]:
    spec = modality_definition(modality).loader
    options = {k: v for k, v in entry.items() if k not in ("modality", "path")}
    for name in spec.path_options:
        if name in options:
            options[name] = str(root / options[name])
    return modality, str(root / entry["path"]), options


def synthetic_examples(config, directory: "str | Path", modalities: list[str] | None = None,
                       seed: int = EXAMPLE_SEED) -> list[Example]:
    """Write the example files under ``directory`` and return the examples, grouped by modality in the model's
    order (``modalities`` default to the model's own)."""
    from ..data.synth import generate_world
    from ..data.synth.world import world_modalities

    wanted = list(modalities if modalities is not None else config.modalities)
    chosen = [m for m in wanted if m in world_modalities()]
    if not chosen:
        return []
    result = generate_world(directory, per_modality=PER_MODALITY, seed=seed, split="demo", modalities=chosen,
                            config=config)
    root = Path(result["root"])
    requests = [json.loads(line) for line in Path(result["manifests"]["requests"]).read_text().splitlines() if line]
    examples: list[Example] = []
    first_input: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for modality in chosen:
        mine = [r for r in requests if r["inputs"][0]["modality"] == modality]
        samples = sorted({r["id"].rsplit("-", 1)[0] for r in mine})
        for index, sample in enumerate(samples[:PER_MODALITY]):
            task = "caption" if index == 0 else "qa"
            request = next(r for r in mine if r["id"].startswith(sample + "-") and r["task"] == task)
            inputs = [_absolute(root, modality, request["inputs"][0])]
            first_input.setdefault(modality, inputs[0])
            examples.append(Example(modality, request["prompt"], inputs, request.get("answer")))
    if "video" in first_input and "audio" in first_input:
        examples.append(Example("video", "Describe what you see and hear.",
                                [first_input["video"], first_input["audio"]]))
    return examples
