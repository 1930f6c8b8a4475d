"""Shared machinery of the data_prep scripts: arguments, paths, skip counting, manifest writing and validation.

A script turns its public release into *items*: manifest rows (dicts) or strings, the reasons input records were
skipped. :func:`finish` streams the rows into the manifest (atomically, ``write_jsonl``), validates it, optionally
derives an instruction manifest, prints ``kept N, skipped M: reason counts`` and returns the exit code (1 when
nothing was kept). Media paths are written relative to the manifest's folder when the file lies under it
(lexically, after ``os.path.abspath``), else absolute: a dataset folder holding its manifest can be moved whole.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from onellm.data.manifest import ManifestIndex, path_option_names, write_jsonl
from onellm.modalities import get as modality_definition

Item = dict[str, Any] | str  # a manifest row, or the reason an input record was skipped
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
PLACEHOLDER = re.compile(r"\s*<(?:image|video|audio|point|imu|fmri|depth|normal)>\s*")
ROLES = {"human": "human", "user": "human", "gpt": "gpt", "assistant": "gpt"}
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # LAION captions can exceed csv's 128 KiB default


def add_verify_arguments(p: argparse.ArgumentParser, flag: bool = True) -> None:
    """--verify (decode every input with the loaders; skip the unusable ones by reason) and its options."""
    if flag:
        p.add_argument("--verify", action="store_true",
                       help="decode every media file with onellm's loaders and skip the unusable ones by reason "
                            "(0-byte files, undecodable media, wrong shapes); without it only existence is checked")
    p.add_argument("--verify-config", default="onellm-7b",
                   help="model geometry the files are checked against: a preset name or a model directory "
                        "(default: %(default)s; fMRI voxels and IMU windows depend on it)")
    p.add_argument("--verify-workers", type=int, default=1, help="processes decoding in parallel (default: 1)")


def parser(doc: str | None, instruction: bool = True) -> argparse.ArgumentParser:
    """A parser showing the script's docstring; --out, --limit, --verify and (alignment scripts) --instruction."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="manifest to write (JSONL)")
    p.add_argument("--limit", type=int, default=None, help="stop after N kept records")
    add_verify_arguments(p)
    if not instruction:
        return p
    p.add_argument("--instruction", type=Path, help="also write this instruction manifest: one conversation per "
                   "record, human = --prompt, gpt = the (first) caption")
    p.add_argument("--prompt", help="human turn of --instruction (default: the modality's captioning prompt, e.g. "
                   "'Provide a one-sentence caption for the provided image.')")
    p.add_argument("--per-caption", action="store_true",
                   help="with --instruction: one conversation per caption instead of the first caption only")
    return p


@dataclass
class Tally:
    """Kept/skipped counts with reasons, plus notes on records that were kept but adjusted."""
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        def counts(c: Counter[str]) -> str:
            return ", ".join(f"{reason} ({n})" for reason, n in c.most_common())
        text = f"kept {self.kept}, skipped {sum(self.skipped.values())}"
        text += f": {counts(self.skipped)}" if self.skipped else ""
        return text + (f"; adjusted: {counts(self.notes)}" if self.notes else "")


NOTES: Counter[str] = Counter()  # adjustments reported by the helpers below; finish() moves them into its Tally


def media_path(path: str | Path, base: str) -> str:
    """``path`` relative to the folder ``base`` when it lies under it, else absolute."""
    absolute = os.path.abspath(path)
    return os.path.relpath(absolute, base) if absolute.startswith(base.rstrip(os.sep) + os.sep) else absolute


def _map_paths(row: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    for inp in row.get("inputs", []):
        inp.update({key: fn(inp[key]) for key in ("path", *path_option_names()) if key in inp})
    return row


def write(out: Path, items: Iterable[Item], limit: int | None = None, rename_duplicates: bool = False) -> Tally:
    """Stream ``items`` into ``out`` (atomic); skips and duplicate ids are counted, not written."""
    tally, seen, base = Tally(), set(), os.path.abspath(out.parent)
    NOTES.clear()

    def rows() -> Iterator[dict[str, Any]]:
        for item in items:
            if isinstance(item, str):
                tally.skipped[item] += 1
                continue
            rid = str(item["id"])
            if rid in seen and not rename_duplicates:
                tally.skipped["duplicate id"] += 1
                continue
            if rid in seen:
                rid = item["id"] = next(f"{rid}-{k}" for k in itertools.count(1) if f"{rid}-{k}" not in seen)
                tally.notes["duplicate id renamed"] += 1
            seen.add(rid)
            tally.kept += 1
            yield _map_paths(item, lambda p: media_path(p, base))
            if limit is not None and tally.kept >= limit:
                return

    write_jsonl(out, rows())  # a generator: a 2M-row input is never held in memory
    tally.notes.update(NOTES)
    return tally


def validate(path: Path, require: str) -> int:
    """``read_manifest``'s checks in bounded memory (``ManifestIndex``: an offset index and 64-bit id hashes, no
    Records and no set of ids: a multi-million-line manifest costs ~30 bytes a line); the number of records."""
    return len(ManifestIndex.build(path, require=require))


# -- --verify: decode every input with the loaders ------------------------------------------------------------
_CHECK_CONFIG: Any = None


def verify_config(spec: str):
    """A preset name or a model directory -> its OneLLMConfig (the geometry inputs are checked against)."""
    from onellm.config import OneLLMConfig

    path = Path(spec)
    if path.is_dir():
        return OneLLMConfig.from_dict(json.loads((path / "config.json").read_text(encoding="utf-8")))
    return OneLLMConfig.preset(spec)


def short_reason(problem: str) -> str:
    """A problem text as a countable reason: its first clause, numbers folded ("cannot decode image")."""
    clause = problem.split(": ", 1)[0].strip() or problem
    return re.sub(r"\d+(\.\d+)?", "N", clause)[:80]


def unusable(inputs: list[dict[str, Any]], config) -> tuple[str, str] | None:
    """(reason, full error) of the first input the loaders cannot use, else None."""
    from onellm.data.errors import InputError
    from onellm.data.manifest import path_option_names
    from onellm.modalities import resolve
    from onellm.modalities.loading import load_modality

    for inp in inputs:
        modality = resolve(inp["modality"])
        for key in ("path", *path_option_names()):
            if key in inp:
                try:
                    empty = os.path.getsize(inp[key]) == 0
                except OSError:
                    continue  # the loader names a missing file
                if empty:
                    return f"unusable {modality}: empty file (0 bytes)", f"{inp[key]}: empty file (0 bytes)"
        try:
            load_modality(modality, dict(inp), train=False, config=config)
        except InputError as exc:
            return f"unusable {modality}: {short_reason(exc.problem)}", str(exc)
        except Exception as exc:  # a decoder bug: still this file's problem
            return f"unusable {modality}: {type(exc).__name__}", f"{inp.get('path')}: {exc}"
    return None


def _init_check(spec: str) -> None:
    global _CHECK_CONFIG
    _CHECK_CONFIG = verify_config(spec)


def _check_row(row: dict[str, Any]) -> tuple[str, str] | None:
    return unusable(row.get("inputs", []), _CHECK_CONFIG)


def verified(items: Iterable[Item], args: argparse.Namespace, chunk: int = 256) -> Iterator[Item]:
    """``items`` with every row whose media the loaders cannot decode replaced by its reason ("unusable video:
    empty file (0 bytes)", "unusable image: cannot decode image"); the first few full errors go to stderr. In
    order, in chunks (``--verify-workers`` processes), never the whole input at once."""
    if not getattr(args, "verify", False):
        yield from items
        return
    workers = max(1, int(getattr(args, "verify_workers", 1) or 1))
    spec = getattr(args, "verify_config", "onellm-7b")
    shown = 0
    pool = None
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_check, initargs=(spec,))
    else:
        _init_check(spec)
    try:
        it = iter(items)
        while True:
            block = list(itertools.islice(it, chunk))
            if not block:
                break
            rows = [i for i in block if not isinstance(i, str)]
            results = iter(pool.map(_check_row, rows) if pool else map(_check_row, rows))
            for item in block:
                if isinstance(item, str):
                    yield item
                    continue
                found = next(results)
                if found is None:
                    yield item
                    continue
                if shown < 5:
                    print(f"skipped {item.get('id')}: {found[1]}", file=sys.stderr)
                    shown += 1
                yield found[0]
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def _instruction_rows(src: Path, prompt: str | None, per_caption: bool) -> Iterator[dict[str, Any]]:
    """Alignment rows of ``src`` as prompt -> caption conversations, paths re-based from src's to dst's folder."""
    src_base = os.path.abspath(src.parent)
    with src.open(encoding="utf-8") as f:
        for line in f:
            row = _map_paths(json.loads(line), lambda p: os.path.join(src_base, p))  # absolute stays absolute
            captions = row.pop("caption")
            captions = [captions] if isinstance(captions, str) else captions
            chosen = list(enumerate(captions)) if per_caption else [(0, captions[0])]
            question = prompt or modality_definition(row["inputs"][0]["modality"]).caption_prompt
            for k, caption in chosen:
                yield {**row, "id": f"{row['id']}-{k}" if per_caption else row["id"],
                       "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": caption}],
                       "type": "+".join(i["modality"] for i in row["inputs"]) or "text"}


def finish(args: argparse.Namespace, items: Iterable[Item], require: str = "caption",
           rename_duplicates: bool = False) -> int:
    """Write, validate and summarise ``--out`` (and ``--instruction`` when given); the script's exit code."""
    out: Path = args.out
    tally = write(out, verified(items, args), args.limit, rename_duplicates)
    if tally.kept == 0:
        out.unlink(missing_ok=True)  # an empty manifest would only fail later, far from the cause
        print(f"{out}: nothing kept; {tally.summary()}", file=sys.stderr)
        return 1
    validate(out, require)
    print(f"{out}: {tally.summary()}")
    if (instruction := getattr(args, "instruction", None)) is not None:
        write(instruction, _instruction_rows(out, args.prompt, args.per_caption))
        print(f"{instruction}: {validate(instruction, 'conversations')} conversations")
    return 0


def clean_caption(text: Any) -> str:
    """Whitespace-normalised caption ('' for anything but a string: None, NaN ...)."""
    return " ".join(text.split()) if isinstance(text, str) else ""


def captions_or_reason(values: Iterable[Any]) -> list[str] | str:
    return [c for c in map(clean_caption, values) if c] or "empty caption"


def strip_placeholders(text: str) -> str:
    """Remove ``<image>``-style placeholders (and the whitespace around them), as the original deletes them."""
    return PLACEHOLDER.sub(" ", text).strip() if "<" in text else text


def clean_conversations(turns: Any) -> list[dict[str, str]] | str:
    """Normalised human/gpt turns without placeholders, or the reason they are unusable."""
    if not isinstance(turns, list) or not turns:
        return "no conversations"
    out = []
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return "malformed conversation turn"
        role = ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            return "unknown conversation role"
        out.append({"from": role, "value": strip_placeholders(turn["value"])})
    notes = ["leading gpt turn dropped"] if out[0]["from"] == "gpt" else []  # as LLaVA's preprocessing
    out = out[1:] if notes else out
    if out and out[-1]["from"] == "human":  # unanswered questions supervise nothing
        out = out[:max((k + 1 for k, t in enumerate(out) if t["from"] == "gpt"), default=0)]
        notes.append("trailing human turn dropped")
    if not out:
        return "no answered turn"
    if any(t["from"] != ("human" if k % 2 == 0 else "gpt") for k, t in enumerate(out)):
        return "turns do not alternate human/gpt"
    if any(not t["value"].strip() for t in out if t["from"] == "gpt"):
        return "empty answer"
    NOTES.update(notes)
    return out


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def iter_csv(path: Path, delimiter: str = ",", fieldnames: list[str] | None = None
             ) -> Iterator[tuple[int, dict[str, str] | None]]:
    """(row number, row or None when its field count is wrong); streamed."""
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f, fieldnames=fieldnames, delimiter=delimiter), 1):
            yield n, (None if None in row or None in row.values() else row)


def caption_row(rid: str, modality: str, path: Path, caption: str | list[str], **options: Any) -> dict[str, Any]:
    return {"id": rid, "inputs": [{"modality": modality, "path": str(path), **options}], "caption": caption}


@lru_cache(maxsize=64)
def imu_timestamps(root: str, uid: str) -> np.ndarray | str:
    """imu2clip ``<uid>_timestamps.npy`` (ms) checked against ``<uid>.npy``, or the reason the video is unusable."""
    signal, stamps = Path(root) / f"{uid}.npy", Path(root) / f"{uid}_timestamps.npy"
    if not signal.is_file() or not stamps.is_file():
        return "no IMU for video"
    try:
        shape = np.load(signal, mmap_mode="r").shape  # header only
        ts = np.load(stamps).astype(np.float64).reshape(-1)
    except (OSError, ValueError):
        return "unreadable IMU file"
    if len(shape) != 2 or len(ts) not in shape or len(ts) < 2 or (np.diff(ts) < 0).any():
        return "IMU signal and timestamps disagree"
    return ts


def imu_window_reasons(ts_ms: np.ndarray, start: np.ndarray, end: np.ndarray,
                       max_gap_s: float = 4.0, min_samples: int = 10) -> list[str | None]:
    """Per window (checked on the ms-rounded values records carry): None when the IMU loader (imu2clip
    ``get_imu_frames``) can cut it, else why not."""
    s, e = np.round(np.asarray(start, float), 3) * 1000, np.round(np.asarray(end, float), 3) * 1000
    lo, hi = np.searchsorted(ts_ms, s, "left"), np.searchsorted(ts_ms, e, "left")  # bisect_left
    last = len(ts_ms) - 1
    outside = (s < ts_ms[0]) | (e > ts_ms[-1]) | (e <= s)
    gap = (np.abs(s - ts_ms[np.minimum(lo, last)]) > max_gap_s * 1000) | \
          (np.abs(e - ts_ms[np.minimum(hi, last)]) > max_gap_s * 1000)
    few = (hi - lo) < min_samples
    return [("IMU window outside the recording" if o else "IMU window in a recording gap" if g
             else f"IMU window holds fewer than {min_samples} samples" if f else None)
            for o, g, f in zip(outside.tolist(), gap.tolist(), few.tolist())]


def imu_input(root: Path, uid: str, start: float, end: float) -> dict[str, Any]:
    return {"modality": "imu", "path": str(root / f"{uid}.npy"), "timestamps": str(root / f"{uid}_timestamps.npy"),
            "start": round(float(start), 3), "end": round(float(end), 3)}
