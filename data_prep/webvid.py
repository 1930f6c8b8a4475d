#!/usr/bin/env python3
"""WebVid-2.5M / 10M -> video alignment manifest (caption = the `name` column).

Inputs:
  --csv results_2M_train.csv   the released metadata: comma-separated with a header, columns
      videoid, contentUrl, duration, page_dir, name (`name` is quoted when it holds commas); streamed row by row.
  --videos DIR                 the downloaded videos. The file of a row is the first of --template that exists
      (format fields = the CSV's columns); default: `{page_dir}/{videoid}.mp4` (the layout of WebVid's own download
      script) then `{videoid}.mp4` (flat).

Example:
  python data_prep/webvid.py --csv webvid/results_2M_train.csv --videos webvid/videos --out webvid/webvid.jsonl
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

DEFAULT_TEMPLATES = ("{page_dir}/{videoid}.mp4", "{videoid}.mp4")


def items(args) -> Iterator[common.Item]:
    templates = args.template or DEFAULT_TEMPLATES
    for _, row in common.iter_csv(args.csv):
        if row is None or not (row.get("videoid") or "").strip():
            yield "bad row"
            continue
        caption = common.clean_caption(row.get("name"))
        if not caption:
            yield "empty caption"
            continue
        fields = {k: v.strip() for k, v in row.items()}
        video = None
        for template in templates:
            try:
                candidate = args.videos / template.format(**fields).lstrip("/")  # an empty page_dir
            except (KeyError, IndexError):  # a template field the CSV lacks
                continue
            if candidate.is_file():
                video = candidate
                break
        if video is None:
            yield "missing video"
        else:
            yield common.caption_row(f"webvid-{fields['videoid']}", "video", video, caption)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--csv", type=Path, required=True, help="results_2M_train.csv (or results_10M_*.csv)")
    p.add_argument("--videos", type=Path, required=True, help="folder of the downloaded videos")
    p.add_argument("--template", action="append",
                   help="video path under --videos with {column} fields; repeatable, first existing wins "
                        f"(default: {' then '.join(DEFAULT_TEMPLATES)})")
    args = p.parse_args(argv)
    return common.finish(args, items(args))


if __name__ == "__main__":
    sys.exit(main())
