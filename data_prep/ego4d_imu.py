#!/usr/bin/env python3
"""Ego4D narrations + imu2clip-processed IMU -> IMU alignment manifest (windows around narrations).

Inputs:
  --imu-dir processed_imu/   imu2clip extract_imu.py output: <video_uid>.npy (6, T: acc xyz, gyro xyz) and
      <video_uid>_timestamps.npy (T times in milliseconds).
  --narrations narration.json   Ego4D v2 annotations: {video_uid: {"narration_pass_1": {"narrations":
      [{"timestamp_sec", "narration_text", ...}], "summaries": [...]}, "narration_pass_2": {...}}}. One window of
      --window seconds (default 2, the model's 400 samples at 200 Hz) centred on each narration of the --passes.
  --windows window_idx_train.json   alternatively the original's window list [{video_uid, window_start,
      window_end, text}] (seconds), used as given.

A record is {"modality": "imu", "path": <uid>.npy, "timestamps": <uid>_timestamps.npy, "start", "end"} (seconds,
rounded to ms). Windows the IMU loader would reject are skipped: outside the recording (before the first or after
the last timestamp), more than 4 s from the nearest sample at an edge (a recording gap), or holding < 10 samples;
so are videos without IMU files.

Captions: Ego4D tags become words: "#C C" (the camera wearer as subject) and any other "#C" -> "the camera
wearer"; "#O" with a following "man X"/"a woman Y"/"person B"-style label (the letter optional) -> "someone", a
bare "#O" -> "someone"; "#unsure" is dropped; whitespace collapsed, first letter capitalised. E.g.
"#C C picks a cup from #O man X" -> "The camera wearer picks a cup from someone". Narrations empty after cleaning
are skipped.

Example:
  python data_prep/ego4d_imu.py --narrations ego4d/v2/annotations/narration.json --imu-dir ego4d/processed_imu \\
      --out ego4d/imu_align.jsonl
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

CAMERA_WEARER = re.compile(r"#[cC](?:\s+[cC]\b)?")
# "#O man X", "#O The woman Y", "#O person B": the label letter is upper case, the words any case
OTHER = re.compile(r"#[oO](?:\s+(?:(?i:a|an|the)\s+)?(?i:man|woman|person|lady|boy|girl|child|kid)\b(?:\s+[A-Z]\b)?)?")


def clean_narration(text: str) -> str:
    """Ego4D narration tags -> plain words (see the module docstring)."""
    text = CAMERA_WEARER.sub("the camera wearer", str(text))
    text = OTHER.sub("someone", text)
    text = re.sub(r"#unsure", " ", text, flags=re.IGNORECASE)
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def narration_windows(args) -> Iterator[tuple[str, list[tuple[str, float, float, Any]]]]:
    """(video_uid, [(record id, start, end, raw text)]) per video of narration.json."""
    half = args.window / 2
    for uid, video in common.read_json(args.narrations).items():
        windows = []
        for p in args.passes:
            for k, n in enumerate((video.get(f"narration_pass_{p}") or {}).get("narrations") or []):
                t = n.get("timestamp_sec") if isinstance(n, dict) else None
                if not isinstance(t, (int, float)):
                    windows.append((f"ego4d-{uid}-p{p}-{k}", np.nan, np.nan, None))
                else:
                    windows.append((f"ego4d-{uid}-p{p}-{k}", t - half, t + half, n.get("narration_text")))
        yield uid, windows


def listed_windows(args) -> Iterator[tuple[str, list[tuple[str, float, float, Any]]]]:
    """The original's window JSON, grouped by video (order of first appearance)."""
    videos: dict[str, list[tuple[str, float, float, Any]]] = {}
    for k, w in enumerate(common.read_json(args.windows)):
        ok = isinstance(w, dict) and all(isinstance(w.get(key), (int, float)) for key in ("window_start", "window_end"))
        uid = str(w.get("video_uid", "")) if isinstance(w, dict) else ""
        videos.setdefault(uid, []).append((f"ego4d-{uid}-{k}", w["window_start"] if ok else np.nan,
                                           w["window_end"] if ok else np.nan, w.get("text") if ok else None))
    yield from videos.items()


def items(args) -> Iterator[common.Item]:
    source = narration_windows(args) if args.narrations else listed_windows(args)
    root = str(args.imu_dir)
    for uid, windows in source:
        if not windows:
            continue
        ts = common.imu_timestamps(root, uid) if uid else "bad entry (no video_uid)"
        if isinstance(ts, str):
            yield from [ts] * len(windows)
            continue
        starts = np.array([w[1] for w in windows], float)
        ends = np.array([w[2] for w in windows], float)
        reasons = common.imu_window_reasons(ts, np.nan_to_num(starts, nan=-1.0), np.nan_to_num(ends, nan=-1.0))
        for (rid, start, end, raw), reason in zip(windows, reasons):
            caption = clean_narration(raw) if isinstance(raw, str) else ""
            if np.isnan(start):
                yield "bad entry (no numeric time)"
            elif reason:
                yield reason
            elif not caption:
                yield "empty narration"
            else:
                yield {"id": rid, "inputs": [common.imu_input(args.imu_dir, uid, start, end)], "caption": caption}
        common.imu_timestamps.cache_clear()  # videos come one at a time here: keep memory flat


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--narrations", type=Path, help="Ego4D v2 narration.json")
    src.add_argument("--windows", type=Path, help="window list [{video_uid, window_start, window_end, text}]")
    p.add_argument("--imu-dir", type=Path, required=True, help="imu2clip processed_imu folder")
    p.add_argument("--window", type=float, default=2.0, help="window length in seconds (default: %(default)s)")
    p.add_argument("--passes", type=int, nargs="+", choices=(1, 2), default=[1],
                   help="narration passes to use (default: 1)")
    args = p.parse_args(argv)
    return common.finish(args, items(args))


if __name__ == "__main__":
    sys.exit(main())
