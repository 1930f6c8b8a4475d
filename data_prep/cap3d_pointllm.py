#!/usr/bin/env python3
"""Cap3D captions + PointLLM point clouds -> point alignment manifest; PointLLM instructions -> point
instruction manifest.

Inputs:
  --points 8192_npy/       PointLLM's Objaverse point clouds (HF RunsenXu/PointLLM, Objaverse_660K_8192_npy):
      <uid>_8192.npy, (8192, 6) xyz + rgb (file name = uid + --suffix).
  --captions Cap3D_automated_Objaverse.csv   (alignment) Cap3D's caption file (HF tiange/Cap3D; also the
      _full / _no3Dword variants): comma-separated, no header, rows `uid,caption` (quoted when it holds commas).
  --instructions PointLLM_complex_instruction_70K.json   (instruction) a JSON list of {"object_id",
      "conversation_type", "conversations": [{"from", "value"}]} with "<point>" placeholders, which are removed
      (PointLLM_brief_description_660K*.json has the same format). Ids are pointllm-<object_id>, suffixed -1, -2
      ... for the further conversations of an object.
  --exclude FILE           objects to leave out, e.g. PointLLM's val_object_ids_3000.txt (one uid a line) or a
      json list of uids / of {"object_id"} (PointLLM_brief_description_val_200_GT.json).

Example:
  python data_prep/cap3d_pointllm.py --points pointllm/8192_npy --captions Cap3D_automated_Objaverse.csv \\
      --exclude val_object_ids_3000.txt --out pointllm/cap3d_train.jsonl
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402


def excluded(paths: list[Path]) -> set[str]:
    out: set[str] = set()
    for path in paths:
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # a plain list of uids
            out.update(line.strip() for line in text.splitlines() if line.strip())
            continue
        out.update(str(d["object_id"]) if isinstance(d, dict) else str(d) for d in data)
    return out


def caption_items(args, skip: set[str]) -> Iterator[common.Item]:
    with open(args.captions, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            if len(row) != 2 or not row[0].strip():
                yield "bad row"
                continue
            uid, caption = row[0].strip(), common.clean_caption(row[1])
            path = args.points / f"{uid}{args.suffix}"
            if uid in skip:
                yield "excluded object"
            elif not caption:
                yield "empty caption"
            elif not path.is_file():
                yield "missing point cloud"
            else:
                yield common.caption_row(f"cap3d-{uid}", "point", path, caption)


def instruction_items(args, skip: set[str]) -> Iterator[common.Item]:
    data = common.read_json(args.instructions)
    for item in data:
        uid = str(item.get("object_id", "")) if isinstance(item, dict) else ""
        if not uid:
            yield "bad item"
            continue
        path = args.points / f"{uid}{args.suffix}"
        if uid in skip:
            yield "excluded object"
            continue
        if not path.is_file():
            yield "missing point cloud"
            continue
        conv = common.clean_conversations(item.get("conversations"))
        if isinstance(conv, str):
            yield conv
            continue
        yield {"id": f"pointllm-{uid}", "inputs": [{"modality": "point", "path": str(path)}],
               "conversations": conv, "type": "point"}


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--captions", type=Path, help="Cap3D_automated_Objaverse*.csv (alignment manifest)")
    src.add_argument("--instructions", type=Path, help="PointLLM_complex_instruction_70K.json (instruction manifest)")
    p.add_argument("--points", type=Path, required=True, help="folder of <uid>_8192.npy point clouds")
    p.add_argument("--suffix", default="_8192.npy", help="point cloud file name after the uid (default: %(default)s)")
    p.add_argument("--exclude", type=Path, action="append", help="uids to leave out (txt or json); repeatable")
    args = p.parse_args(argv)
    skip = excluded(args.exclude or [])
    if args.captions:
        return common.finish(args, caption_items(args, skip))
    if args.instruction:
        p.error("--instruction derives conversations from captions; with --instructions write only --out")
    return common.finish(args, instruction_items(args, skip), require="conversations", rename_duplicates=True)


if __name__ == "__main__":
    sys.exit(main())
