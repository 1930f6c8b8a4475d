"""``onellm synth``: a small, learnable synthetic world with real files for all eight modalities.

``generate_world(out_dir, per_modality, seed, split)`` writes ``out_dir/<split>/<modality>/...`` and three
JSONL manifests in ``out_dir/<split>/`` (paths relative to that folder):

* ``alignment.jsonl``: ``{"id", "inputs", "caption", "attributes"}``, one per sample;
* ``instruction.jsonl``: ``{"id", "inputs", "conversations", "attributes"}``: a caption request -> the caption,
  then one question per attribute (random order) -> the bare value;
* ``requests.jsonl``: per sample one ``"task": "caption"`` request (prompt = the first phrasing of
  :func:`~onellm.data.synth.world.caption_requests`) and one ``"task": "qa"`` request per attribute
  (with ``"attribute"``); ids are ``<sample id>-caption`` / ``<sample id>-<attribute>``.

Attributes cycle through all combinations (balanced), then are shuffled with the seed. Every random draw
comes from a generator seeded by (seed, split, modality, sample index), so the same arguments give
byte-identical manifests and files. The world itself is described in :mod:`onellm.data.synth.world`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ...modality import ALL_MODALITIES, Modality
from . import render, shapes3d, signals
from .world import (ATTRIBUTES, QUESTIONS, attribute_accuracy, balanced_assignments, caption, caption_requests,
                    chance_level)

__all__ = ["generate_world", "add_arguments", "run", "attribute_accuracy", "chance_level", "ATTRIBUTES"]

MANIFESTS = ("alignment", "instruction", "requests")
DEFAULT_FMRI_VOXELS = 15724
NEAR_M, FAR_M = (2.7, 3.1), (4.8, 5.6)  # object distances of "near" / "far" depth scenes (metres)
IMU_WINDOW_S = 2.0


def _rng(seed: int, split: str, modality: Modality, *extra: int) -> np.random.Generator:
    """Independent generator per (seed, split, modality, ...); crc32 because ``hash(str)`` is salted."""
    return np.random.default_rng([seed, zlib.crc32(split.encode()), ALL_MODALITIES.index(modality), *extra])


# Writers: (split folder, file stem "<modality>/<index>", sample index, attributes, rng, options)
#   -> the manifest input dict (paths relative to the split folder).
def _image(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    img = render.shape_image(rng, a["colour"], a["shape"])
    if i % 2 == 0:
        rel = f"{stem}.png"
        render.save_png(root / rel, img)
    else:  # alternate formats: the loaders must read both
        rel = f"{stem}.jpg"
        render.Image.fromarray(img).save(root / rel, format="JPEG", quality=92)
    return {"modality": "image", "path": rel}


def _video(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    rel = f"{stem}.mp4"
    render.write_mp4(root / rel, render.ball_frames(rng, a["colour"], a["motion"]), render.VIDEO_FPS)
    return {"modality": "video", "path": rel}


def _audio(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    import soundfile

    rel = f"{stem}.wav"
    soundfile.write(str(root / rel), signals.tone(rng, a["pitch"], a["pattern"]), signals.AUDIO_RATE,
                    subtype="PCM_16", format="WAV")
    return {"modality": "audio", "path": rel}


def _point(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    if i % 2 == 0:
        rel = f"{stem}.ply"
        shapes3d.write_mesh(root / rel, rng, a["shape"], a["colour"])
    else:
        rel = f"{stem}.npy"
        np.save(root / rel, shapes3d.sample_cloud(rng, a["shape"], a["colour"]))
    return {"modality": "point", "path": rel}


def _scene(root: Path, stem: str, modality: str, shape: str, distance: float, rgb: tuple[int, int, int],
           rng: np.random.Generator) -> dict:
    image, depth, normal = render.render_scene(rng, shape, distance, rgb)
    rel, rel_rgb = f"{stem}_{modality}.png", f"{stem}_rgb.png"
    render.save_png(root / rel, depth if modality == "depth" else normal)
    render.save_png(root / rel_rgb, image)
    return {"modality": modality, "path": rel, "rgb": rel_rgb}


def _depth(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    distance = rng.uniform(*(NEAR_M if a["distance"] == "near" else FAR_M))
    rgb = render.DEPTH_PALETTE[int(rng.integers(len(render.DEPTH_PALETTE)))]  # colour is not an attribute
    return _scene(root, stem, "depth", a["shape"], distance, rgb, rng)


def _normal(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    return _scene(root, stem, "normal", a["shape"], rng.uniform(2.6, 4.2), render.COLOUR_RGB[a["colour"]], rng)


def _imu(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    seconds = round(float(rng.uniform(4.0, 4.5)), 2)
    signal, stamps = signals.imu_recording(rng, a["activity"], a["turning"], seconds)
    # A 2-s window starting on a 50-ms grid, at least 0.25 s from both ends of the recording.
    start = round(0.05 * int(rng.integers(5, int((seconds - IMU_WINDOW_S - 0.25) / 0.05) + 1)), 2)
    rel, rel_ts = f"{stem}.npy", f"{stem}_timestamps.npy"
    np.save(root / rel, signal)
    np.save(root / rel_ts, stamps)
    return {"modality": "imu", "path": rel, "timestamps": rel_ts, "start": start,
            "end": round(start + IMU_WINDOW_S, 2)}


def _fmri(root: Path, stem: str, i: int, a: dict, rng: np.random.Generator, o: dict) -> dict:
    rel = f"{stem}.npy"
    np.save(root / rel, signals.fmri_response(rng, a, o["fmri_voxels"]))
    return {"modality": "fmri", "path": rel}


WRITERS: dict[Modality, Callable[..., dict]] = {
    Modality.IMAGE: _image, Modality.VIDEO: _video, Modality.AUDIO: _audio, Modality.POINT: _point,
    Modality.DEPTH: _depth, Modality.NORMAL: _normal, Modality.IMU: _imu, Modality.FMRI: _fmri}


def _records(modality: Modality, sid: str, inp: dict, attrs: dict[str, str],
             rng: np.random.Generator) -> dict[str, list[dict]]:
    """The manifest records of one sample (text choices drawn from ``rng``)."""
    m = str(modality)
    cap = caption(m, attrs, int(rng.integers(1 << 16)))
    requests = caption_requests(m)
    turns = [{"from": "human", "value": requests[int(rng.integers(len(requests)))]}, {"from": "gpt", "value": cap}]
    for name in rng.permutation(list(attrs)).tolist():
        turns += [{"from": "human", "value": QUESTIONS[m][name]}, {"from": "gpt", "value": attrs[name]}]
    reqs = [{"id": f"{sid}-caption", "inputs": [inp], "prompt": requests[0], "answer": cap, "attributes": attrs,
             "task": "caption"}]
    reqs += [{"id": f"{sid}-{name}", "inputs": [inp], "prompt": QUESTIONS[m][name], "answer": value,
              "attributes": attrs, "task": "qa", "attribute": name} for name, value in attrs.items()]
    return {"alignment": [{"id": sid, "inputs": [inp], "caption": cap, "attributes": attrs}],
            "instruction": [{"id": sid, "inputs": [inp], "conversations": turns, "attributes": attrs}],
            "requests": reqs}


def _write_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Write atomically: a temporary file in the same folder, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    os.replace(tmp, path)


def parse_modalities(modalities: str | Iterable[str | Modality] | None) -> list[Modality]:
    """``None`` (all), ``"image,audio"`` or names -> modalities in canonical order, without duplicates."""
    if modalities is None:
        return list(ALL_MODALITIES)
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split(",") if m.strip()]
    wanted = {Modality.parse(m) for m in modalities}
    return [m for m in ALL_MODALITIES if m in wanted]


def generate_world(out_dir: str | os.PathLike, per_modality: int, seed: int, split: str = "train",
                   modalities: str | Iterable[str | Modality] | None = None, *,
                   fmri_voxels: int = DEFAULT_FMRI_VOXELS) -> dict[str, Any]:
    """Generate ``per_modality`` samples of each modality under ``out_dir/split``.

    Returns ``{"root": split folder, "split", "seed", "counts": {modality: n}, "files": {modality: n files},
    "manifests": {"alignment" | "instruction" | "requests": path}}`` (paths as strings).
    """
    if per_modality < 0 or seed < 0:
        raise ValueError(f"per_modality and seed must be >= 0, got {per_modality} and {seed}")
    if not split or any(c in split for c in "/\\") or split.startswith("."):
        raise ValueError(f"invalid split name {split!r}")
    if fmri_voxels < 1:
        raise ValueError(f"fmri_voxels must be >= 1, got {fmri_voxels}")
    chosen = parse_modalities(modalities)
    root = Path(out_dir) / split
    root.mkdir(parents=True, exist_ok=True)
    options = {"fmri_voxels": int(fmri_voxels)}
    out: dict[str, list[dict]] = {name: [] for name in MANIFESTS}
    counts: dict[str, int] = {}
    files: dict[str, int] = {}
    for modality in chosen:
        (root / str(modality)).mkdir(exist_ok=True)
        assignments = balanced_assignments(str(modality), per_modality, _rng(seed, split, modality, 1 << 30))
        n_files = 0
        for i, attrs in enumerate(assignments):
            inp = WRITERS[modality](root, f"{modality}/{i:05d}", i, attrs, _rng(seed, split, modality, i), options)
            n_files += sum(1 for k in ("path", "rgb", "timestamps") if k in inp)
            sid = f"{modality}-{split}-{i:05d}"
            for name, recs in _records(modality, sid, inp, attrs, _rng(seed, split, modality, i, 1)).items():
                out[name].extend(recs)
        counts[str(modality)], files[str(modality)] = per_modality, n_files
    manifests = {name: root / f"{name}.jsonl" for name in MANIFESTS}
    for name, path in manifests.items():
        _write_jsonl(path, out[name])
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
                        help="comma-separated subset, e.g. image,audio (default: all eight)")
    parser.add_argument("--fmri-voxels", type=int, default=DEFAULT_FMRI_VOXELS,
                        help=f"voxels per fMRI sample (default {DEFAULT_FMRI_VOXELS}, the NSD nsdgeneral ROI)")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        result = generate_world(args.out, args.per_modality, args.seed, split=args.split,
                                modalities=args.modalities, fmri_voxels=args.fmri_voxels)
    except ValueError as exc:
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
