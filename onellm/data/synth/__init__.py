"""``onellm synth``: a small, learnable synthetic world with real files for every modality.

``generate_world(out_dir, per_modality, seed, split)`` writes ``out_dir/<split>/<modality>/...`` and three
JSONL manifests in ``out_dir/<split>/`` (paths relative to that folder):

* ``alignment.jsonl``: ``{"id", "inputs", "caption", "attributes"}``, one per sample;
* ``instruction.jsonl``: ``{"id", "inputs", "conversations", "attributes"}``: a caption request -> the caption
  and one question per attribute -> the bare value, in a random order (each is also asked first, as the single-turn
  ``requests.jsonl`` asks it: after the caption, an answer could be copied from it instead of read from the input);
* ``requests.jsonl``: per sample one ``"task": "caption"`` request (prompt = the first phrasing of
  :func:`~onellm.data.synth.world.caption_requests`) and one ``"task": "qa"`` request per attribute
  (with ``"attribute"``); ids are ``<sample id>-caption`` / ``<sample id>-<attribute>``.

Attributes cycle through all combinations (balanced), then are shuffled with the seed. Every random draw
comes from a generator seeded by (seed, split, modality stream, sample index), so the same arguments give
byte-identical manifests and files. The world itself is described in :mod:`onellm.data.synth.world`.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ...io import atomic_write_text
from ...modalities import get as modality_definition
from ...modalities import parse_modalities
from .world import (ATTRIBUTES, attribute_accuracy, balanced_assignments, caption, caption_requests, chance_level,
                    conversation,
                    questions, world_modalities)

__all__ = ["generate_world", "add_arguments", "run", "attribute_accuracy", "chance_level", "ATTRIBUTES"]

MANIFESTS = ("alignment", "instruction", "requests")


def _records(modality: str, sid: str, inp: dict, attrs: dict[str, str],
             rng: "np.random.Generator") -> dict[str, list[dict]]:
    """The manifest records of one sample (text choices drawn from ``rng``)."""
    m = modality
    cap = caption(m, attrs, int(rng.integers(1 << 16)))
    asked = questions(m)
    requests = caption_requests(m)
    order = [name or None for name in rng.permutation(["", *attrs]).tolist()]  # None: the caption request
    turns = conversation(m, attrs, order, lambda: (requests[int(rng.integers(len(requests)))], cap))
    reqs = [{"id": f"{sid}-caption", "inputs": [inp], "prompt": requests[0], "answer": cap, "attributes": attrs,
             "task": "caption"}]
    reqs += [{"id": f"{sid}-{name}", "inputs": [inp], "prompt": asked[name], "answer": value,
              "attributes": attrs, "task": "qa", "attribute": name} for name, value in attrs.items()]
    return {"alignment": [{"id": sid, "inputs": [inp], "caption": cap, "attributes": attrs}],
            "instruction": [{"id": sid, "inputs": [inp], "conversations": turns, "attributes": attrs}],
            "requests": reqs}


def generate_world(out_dir: str | os.PathLike, per_modality: int, seed: int, split: str = "train",
                   modalities: "str | Iterable[str] | None" = None, *, config=None) -> dict[str, Any]:
    """Generate ``per_modality`` samples of each modality under ``out_dir/split``.

    ``config`` (a ``OneLLMConfig``, default the ``onellm-7b`` preset) gives the input geometry a generator needs
    (the fMRI voxel count); ``modalities`` default to every modality with a generator, in registry order.
    Returns ``{"root": split folder, "split", "seed", "counts": {modality: n}, "files": {modality: n files},
    "manifests": {"alignment" | "instruction" | "requests": path}}`` (paths as strings).
    """
    from ...config import OneLLMConfig

    if per_modality < 0 or seed < 0:
        raise ValueError(f"per_modality and seed must be >= 0, got {per_modality} and {seed}")
    if not split or any(c in split for c in "/\\") or split.startswith("."):
        raise ValueError(f"invalid split name {split!r}")
    available = world_modalities()
    chosen = parse_modalities(modalities, default=available)
    missing = [m for m in chosen if m not in available]
    if missing:
        raise ValueError(f"no synthetic-world generator for {', '.join(missing)}")
    chosen = [m for m in available if m in chosen]  # canonical order: manifests do not depend on the argument order
    config = config or OneLLMConfig.preset("onellm-7b")
    inputs = copy.deepcopy(config.inputs)
    inputs.ensure(chosen)
    root = Path(out_dir) / split
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[dict]] = {name: [] for name in MANIFESTS}
    counts: dict[str, int] = {}
    files: dict[str, int] = {}
    for modality in chosen:
        definition = modality_definition(modality)
        (root / modality).mkdir(exist_ok=True)
        assignments = balanced_assignments(modality, per_modality, definition.synth_rng(seed, split, 1 << 30))
        n_files = 0
        section = inputs.get(modality)
        path_keys = ("path", *definition.loader.path_options)
        for i, attrs in enumerate(assignments):
            inp = definition.synth.write(root, f"{modality}/{i:05d}", i, attrs, definition.synth_rng(seed, split, i),
                                         section)
            n_files += sum(1 for k in path_keys if k in inp)
            sid = f"{modality}-{split}-{i:05d}"
            for name, recs in _records(modality, sid, inp, attrs, definition.synth_rng(seed, split, i, 1)).items():
                out[name].extend(recs)
        counts[modality], files[modality] = per_modality, n_files
    manifests = {name: root / f"{name}.jsonl" for name in MANIFESTS}
    for name, path in manifests.items():
        atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in out[name]))
    return {"root": str(root), "split": split, "seed": seed, "counts": counts, "files": files,
            "manifests": {k: str(v) for k, v in manifests.items()}}


# ---------------------------------------------------------------------------------------------------------
# CLI glue (wired as ``onellm synth`` by onellm/cli.py)
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (the split goes in OUT/SPLIT)")
    parser.add_argument("--per-modality", type=int, default=50, help="samples per modality (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); use another for test")
    parser.add_argument("--split", default="train", help="split name (default train)")
    parser.add_argument("--modalities", default=None,
                        help="comma-separated subset, e.g. image,audio (default: every modality with a generator)")
    parser.add_argument("--preset", default="onellm-7b",
                        help="model preset whose input geometry the files match, e.g. the fMRI voxel count "
                             "(default onellm-7b: 15724 voxels, the NSD nsdgeneral ROI)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="input-geometry overrides, e.g. inputs.fmri.voxels=2048")


def run(args: argparse.Namespace) -> int:
    import yaml

    from ...config import OneLLMConfig

    start = time.perf_counter()
    try:
        overrides = {}
        for pair in args.set:
            key, sep, value = pair.partition("=")
            if not sep:
                raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
            overrides[key] = yaml.safe_load(value)
        config = OneLLMConfig.preset(args.preset, **overrides)
        result = generate_world(args.out, args.per_modality, args.seed, split=args.split,
                                modalities=args.modalities, config=config)
    except (ValueError, KeyError) as exc:
        print(f"onellm synth: error: {exc}", file=sys.stderr)
        return 2
    print(f"synthetic world, split {result['split']!r}, seed {result['seed']}: {result['root']}")
    for modality, n in result["counts"].items():
        print(f"  {modality:<7} {n:>6} samples  {result['files'][modality]:>6} files  "
              f"(chance attribute accuracy {chance_level(modality):.2f})")
    for name, path in result["manifests"].items():
        print(f"  {name + ':':<13} {path}")
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0
