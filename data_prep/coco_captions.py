#!/usr/bin/env python3
"""COCO captions -> image alignment manifest (caption = every caption of the image), and optionally the
instruction manifest the original calls cococap_train.json ("Provide a one-sentence caption for the provided
image." -> a caption).

Inputs (one of):
  --annotations annotations/captions_train2017.json --images train2017/
      the official release: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]};
      image = IMAGES/file_name.
  --karpathy dataset_coco.json --images COCO_ROOT [--split train,restval]
      Karpathy's split file: {"images": [{"filepath": "val2014", "filename", "cocoid", "split",
      "sentences": [{"raw"}]}]}; image = COCO_ROOT/filepath/filename; only the listed splits are kept.
      The LAVIS/BLIP variant (coco_karpathy_train.json: [{"image": "val2014/x.jpg", "caption", "image_id"}],
      captions grouped by image; no split field, --split ignored) is accepted as well.

Example:
  python data_prep/coco_captions.py --annotations coco/annotations/captions_train2017.json \\
      --images coco/train2017 --out coco/coco_align.jsonl --instruction coco/cococap_train.jsonl
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402


def official(path: Path, images: Path) -> Iterator[tuple[Any, Path, list[str]] | str]:
    data = common.read_json(path)
    caps: dict[Any, list[str]] = {}
    for ann in data["annotations"]:
        caps.setdefault(ann["image_id"], []).append(ann.get("caption"))
    for img in sorted(data["images"], key=lambda i: i["id"]):
        yield img["id"], images / img["file_name"], caps.get(img["id"], [])


def karpathy(path: Path, images: Path, splits: set[str]) -> Iterator[tuple[Any, Path, list[str]] | str]:
    data = common.read_json(path)
    if isinstance(data, list):  # LAVIS: one row per caption (train) or per image with a caption list (val/test)
        grouped: dict[str, list[str]] = {}
        for row in data:
            caption = row.get("caption")
            grouped.setdefault(row["image"], []).extend(caption if isinstance(caption, list) else [caption])
        for rel, caps in grouped.items():
            yield Path(rel).stem.rsplit("_", 1)[-1].lstrip("0") or "0", images / rel, caps
        return
    for img in data["images"]:
        if splits and img.get("split") not in splits:
            yield f"split not selected ({img.get('split')})"
            continue
        yield img["cocoid"], images / img.get("filepath", "") / img["filename"], \
            [s.get("raw") for s in img.get("sentences", [])]


def items(args) -> Iterator[common.Item]:
    source = official(args.annotations, args.images) if args.annotations else \
        karpathy(args.karpathy, args.images, {s for s in args.split.split(",") if s})
    for entry in source:
        if isinstance(entry, str):
            yield entry
            continue
        image_id, path, raw = entry
        caps = common.captions_or_reason(raw)
        if isinstance(caps, str):
            yield "no captions"
        elif not path.is_file():
            yield "missing image"
        else:
            yield common.caption_row(f"coco-{image_id}", "image", path, caps)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--annotations", type=Path, help="captions_train2017.json (official format)")
    src.add_argument("--karpathy", type=Path, help="dataset_coco.json (Karpathy) or LAVIS coco_karpathy_*.json")
    p.add_argument("--images", type=Path, required=True,
                   help="image folder (official) or the COCO root holding train2014/val2014 (Karpathy)")
    p.add_argument("--split", default="train,restval", help="Karpathy splits to keep (default: %(default)s)")
    args = p.parse_args(argv)
    return common.finish(args, items(args))


if __name__ == "__main__":
    sys.exit(main())
