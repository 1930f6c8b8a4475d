#!/usr/bin/env python3
"""LAION / LAION-COCO / CC3M-style image-text pairs -> image (or depth / normal) alignment manifest.

Inputs (one of):
  --csv FILE [FILE ...]   the original's pretraining CSVs: tab-separated, a header with `caption` and `url` (or
      `path`). A `url` is a local path (relative ones resolve against --local-root, default the CSV's folder) or an
      http(s) URL mapped to a local file: URL with --url-prefix replaced by --local-root (a mirror that keeps the
      URL's path). Headerless files name their columns with --columns (CC3M's Train_GCC-training.tsv:
      --columns caption,url). Rows with a wrong field count are skipped, as pandas' on_bad_lines='skip'.
  --wds DIR [DIR ...]     img2dataset / webdataset output: `<key>.jpg` (any image extension) + `<key>.txt`
      (the caption) in folders (searched recursively), and `*.tar` shards read directly with tarfile; images of
      shards are extracted to --extract-dir/<shard name>/<key>.<ext> (kept when already there).

Depth / normal (the original's rgbd / rgbn pretraining data, CC3M + Omnidata DPT maps): with --depth-dir D (or
--normal-dir N) each record becomes a depth (normal) input whose map is D/<key>.<any image ext>, `rgb` = the image.
<key> = the image's path relative to its root (--local-root, the --wds folder, or --extract-dir) without
extension, else its file name - the original's `/cc3m/` -> `/cc3m_depth/` replacement.

Example:
  python data_prep/image_text.py --wds cc3m/ --extract-dir cc3m/images --depth-dir cc3m_depth/ --out cc3m/rgbd.jsonl
"""
from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

from onellm.io import atomic_write_bytes  # noqa: E402


def csv_pairs(args) -> Iterator[tuple[str, Path, Path, str] | str]:
    """(id, image, image root, caption) per CSV row, or a skip reason."""
    columns = args.columns.split(",") if args.columns else None
    for path in args.csv:
        root = args.local_root or path.parent
        for n, row in common.iter_csv(path, args.delimiter, columns):
            if row is None:
                yield "bad row"
                continue
            if "caption" not in row or not ("url" in row or "path" in row):
                yield "no caption and url/path columns"
                continue
            url = (row.get("url") or row.get("path") or "").strip()
            if not url:
                yield "empty url"
                continue
            if url.startswith(("http://", "https://")):
                if not args.url_prefix or not url.startswith(args.url_prefix):
                    yield "remote url without a --url-prefix mapping"
                    continue
                url = url[len(args.url_prefix):].lstrip("/")
            yield f"{path.stem}-{n}", root / url, root, row["caption"]


def wds_folder(folder: Path, skip: Path | None) -> Iterator[tuple[str, Path, Path, str] | str]:
    for dirpath, dirnames, filenames in os.walk(folder):
        # the extracted images of shards are no pairs of their own
        dirnames[:] = sorted(d for d in dirnames if skip is None or os.path.abspath(os.path.join(dirpath, d)) != skip)
        names = set(filenames)
        stems = {os.path.splitext(n)[0] for n in filenames if os.path.splitext(n)[1].lower() in common.IMAGE_EXTS}
        for name in sorted(filenames):
            stem, ext = os.path.splitext(name)
            if ext.lower() in common.IMAGE_EXTS:
                image = Path(dirpath) / name
                if stem + ".txt" not in names:
                    yield "image without .txt caption"
                else:
                    key = image.relative_to(folder).with_suffix("").as_posix()
                    yield key, image, folder, (Path(dirpath) / f"{stem}.txt").read_text("utf-8", "replace")
            elif ext == ".txt" and stem not in stems:
                yield "caption without image"


def wds_tar(shard: Path, extract_dir: Path) -> Iterator[tuple[str, Path, Path, str] | str]:
    with tarfile.open(shard) as tar:
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        for member in tar.getmembers():
            if not member.isfile():
                continue
            name = os.path.normpath(member.name)
            if os.path.isabs(name) or name == ".." or name.startswith(".." + os.sep):
                yield "unsafe tar member name"
                continue
            folder, base = os.path.split(name)
            key, _, ext = base.partition(".")  # webdataset: the key ends at the first dot of the base name
            groups.setdefault(os.path.join(folder, key), {})["." + ext.lower()] = member
        for key, members in groups.items():
            img_ext = next((e for e in members if e in common.IMAGE_EXTS), None)
            if img_ext is None:
                if ".txt" in members:  # other lone files (metadata) are no samples
                    yield "caption without image"
                continue
            if ".txt" not in members:
                yield "image without .txt caption"
                continue
            target = extract_dir / shard.stem / f"{key}{img_ext}"
            if not target.is_file() or target.stat().st_size != members[img_ext].size:
                atomic_write_bytes(target, tar.extractfile(members[img_ext]).read())  # never a torn image
            caption = tar.extractfile(members[".txt"]).read().decode("utf-8", "replace")
            yield f"{shard.stem}/{key}", target, extract_dir, caption


def shards(roots: list[Path]) -> list[Path]:
    return [s for r in roots for s in (sorted(r.rglob("*.tar")) if r.is_dir() else [r])]


def pairs(args) -> Iterator[tuple[str, Path, Path, str] | str]:
    if args.csv:
        yield from csv_pairs(args)
        return
    skip = os.path.abspath(args.extract_dir) if args.extract_dir else None
    for root in args.wds:
        if root.is_dir():
            yield from wds_folder(root, skip)
    for shard in shards(args.wds):
        yield from wds_tar(shard, args.extract_dir)


def find_map(folder: Path, key: Path) -> Path | None:
    """The map named like the image (relative key, else file name) with any image extension."""
    for stem in (folder / key, folder / key.name):
        for ext in common.IMAGE_EXTS:
            if (candidate := stem.with_name(stem.name + ext)).is_file():
                return candidate
    return None


def items(args) -> Iterator[common.Item]:
    modality, maps = ("depth", args.depth_dir) if args.depth_dir else ("normal", args.normal_dir) \
        if args.normal_dir else ("image", None)
    prefix = f"{args.id_prefix}-" if args.id_prefix else ""
    for pair in pairs(args):
        if isinstance(pair, str):
            yield pair
            continue
        rid, image, root, raw = pair
        caption = common.clean_caption(raw)
        if not caption:
            yield "empty caption"
        elif not image.is_file():
            yield "missing image"
        elif maps is None:
            yield common.caption_row(prefix + rid, "image", image, caption)
        else:
            try:
                key = image.relative_to(root).with_suffix("")
            except ValueError:  # an image outside its root (an absolute CSV path): the file name alone
                key = Path(image.stem)
            found = find_map(maps, key)
            yield f"no {modality} map" if found is None else \
                common.caption_row(prefix + rid, modality, found, caption, rgb=str(image))


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, nargs="+", help="pretraining CSV(s): caption + url/path columns")
    src.add_argument("--wds", type=Path, nargs="+", help="webdataset folder(s) and/or .tar shard(s)")
    p.add_argument("--delimiter", default="\t", help="CSV delimiter (default: tab, as the original)")
    p.add_argument("--columns", help="column names of a headerless CSV, e.g. caption,url")
    p.add_argument("--url-prefix", help="http(s) URL prefix replaced by --local-root")
    p.add_argument("--local-root", type=Path, help="folder of local images (default: the CSV's folder)")
    p.add_argument("--extract-dir", type=Path, help="where images of .tar shards are extracted")
    maps = p.add_mutually_exclusive_group()
    maps.add_argument("--depth-dir", type=Path, help="DPT depth maps: emit depth records (rgb = the image)")
    maps.add_argument("--normal-dir", type=Path, help="DPT normal maps: emit normal records (rgb = the image)")
    p.add_argument("--id-prefix", default="", help="prefix of record ids (to merge manifests)")
    args = p.parse_args(argv)
    if args.wds and args.extract_dir is None and shards(args.wds):
        p.error("--extract-dir is needed to read .tar shards")
    return common.finish(args, items(args))


if __name__ == "__main__":
    sys.exit(main())
