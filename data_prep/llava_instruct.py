#!/usr/bin/env python3
"""LLaVA-style / OneLLM instruction JSON -> instruction manifest (conversations, `type` = the data type).

Inputs:
  --json FILE [FILE ...]  JSON lists of {"id", "conversations": [{"from": "human"|"gpt", "value"}], + media keys}:
      LLaVA (llava_v1_5_mix665k.json: `image`, absent for text-only items) and the OneLLM instruction files
      (HF csuhan/OneLLM_InstructionTuning). Media keys, by --type (default auto: the first that applies):
        depth / normal  `depth_image` / `normal_image` = the map, `image` = the paired RGB image
                        (llava_instruct_50k_{depth,normal}.json)
        imu             `video_uid`, `window_start`, `window_end` (seconds), optional `imu_path` = the imu2clip
                        folder holding <video_uid>.npy + <video_uid>_timestamps.npy (imu_fixed_50k.json)
        audio / video / point / fmri   the key of that name; OneLLM's own files keep every path under `image`
                        and tell the kind by file (audiocap_*.json, msrvtt_*.json, pointllm_70k.json,
                        fmri_fixed_train.json ...): give --type audio|video|point|fmri for those
        image           `image`
        text            none of these (LLaVA's ShareGPT items)
      An explicit --type other than auto requires that media in every item (text: ignores any media).
  Media roots: a path resolves against --<modality>-root, else --media-root, else the JSON's folder (LLaVA:
      --image-root playground/data). IMU: --imu-root, else the item's imu_path (resolved the same way).

Conversations: roles human/user and gpt/assistant; "<image>", "<video>", "<audio>", "<point>", "<imu>",
"<fmri>", "<depth>", "<normal>" placeholders are removed with the whitespace around them (the original deletes
"<image>"); a leading gpt turn and a trailing human turn are dropped (counted as adjustments); items whose turns
then do not alternate human, gpt or have an empty answer are skipped. Items with missing media, or IMU windows the
loader would reject (see ego4d_imu.py), are skipped. Ids: the item's `id` (else <json stem>-<index>); repeated
ids get -1, -2 ... suffixes.

Example:
  python data_prep/llava_instruct.py --json llava_v1_5_mix665k.json --image-root playground/data \\
      --out llava/mix665k.jsonl
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

MODALITIES = ("image", "video", "audio", "point", "depth", "normal", "imu", "fmri")


def detect(item: dict[str, Any], forced: str) -> str:
    if forced != "auto":
        return forced
    if item.get("depth_image"):
        return "depth"
    if item.get("normal_image"):
        return "normal"
    if item.get("video_uid") and "window_start" in item:
        return "imu"
    return next((k for k in ("audio", "video", "point", "fmri", "image") if item.get(k)), "text")


def root(args, modality: str, base: Path) -> Path:
    return getattr(args, f"{modality}_root") or args.media_root or base


def imu_inputs(args, item: dict[str, Any], base: Path) -> list[dict[str, Any]] | str:
    uid, start, end = item.get("video_uid"), item.get("window_start"), item.get("window_end")
    if not isinstance(uid, str) or not all(isinstance(v, (int, float)) for v in (start, end)):
        return "bad IMU entry"
    folder = args.imu_root or (root(args, "imu", base) / item["imu_path"] if item.get("imu_path") else None)
    if folder is None:
        return "no IMU folder (--imu-root or imu_path)"
    ts = common.imu_timestamps(str(folder), uid)
    if isinstance(ts, str):
        return ts
    reason = common.imu_window_reasons(ts, [start], [end])[0]
    return reason or [common.imu_input(folder, uid, start, end)]


def inputs(args, item: dict[str, Any], modality: str, base: Path) -> list[dict[str, Any]] | str:
    if modality == "text":
        return []
    if modality == "imu":
        return imu_inputs(args, item, base)
    if modality in ("depth", "normal"):
        rel_map, rel_rgb = item.get(f"{modality}_image"), item.get("image")
        if not isinstance(rel_map, str) or not isinstance(rel_rgb, str):
            return f"no {modality}_image + image paths"
        path, rgb = root(args, modality, base) / rel_map, root(args, "image", base) / rel_rgb
        if not path.is_file():
            return f"missing {modality} map"
        return "missing image" if not rgb.is_file() else \
            [{"modality": modality, "path": str(path), "rgb": str(rgb)}]
    rel = item.get(modality) or item.get("image")  # OneLLM: every kind of path under "image"
    if not isinstance(rel, str) or not rel:
        return f"no {modality} path"
    path = root(args, modality, base) / rel
    return [{"modality": modality, "path": str(path)}] if path.is_file() else f"missing {modality} file"


def items(args) -> Iterator[common.Item]:
    for json_path in args.json:
        base = json_path.parent
        for k, item in enumerate(common.read_json(json_path)):
            if not isinstance(item, dict):
                yield "bad item"
                continue
            modality = detect(item, args.type)
            found = inputs(args, item, modality, base)
            if isinstance(found, str):
                yield found
                continue
            conv = common.clean_conversations(item.get("conversations"))
            if isinstance(conv, str):
                yield conv
                continue
            rid = str(item["id"]) if item.get("id") not in (None, "") else f"{json_path.stem}-{k}"
            yield {"id": rid, "inputs": found, "conversations": conv, "type": modality}


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, instruction=False)
    p.add_argument("--json", type=Path, nargs="+", required=True, help="instruction JSON file(s)")
    p.add_argument("--type", choices=("auto", "text") + MODALITIES, default="auto",
                   help="data type of the items (default: detected per item from its keys)")
    p.add_argument("--media-root", type=Path, help="default root of media paths (default: the JSON's folder)")
    for m in MODALITIES:
        p.add_argument(f"--{m}-root", type=Path, help=f"root of {m} paths (default: --media-root)")
    args = p.parse_args(argv)
    return common.finish(args, items(args), require="conversations", rename_duplicates=True)


if __name__ == "__main__":
    sys.exit(main())
