#!/usr/bin/env python3
"""NSD (subject 1, MindEye preprocessing) fMRI + COCO captions -> fMRI alignment manifest (caption = the COCO
captions of the stimulus image); --instruction adds the conversation manifest.

Inputs:
  --fmri PATH   either a folder of per-trial arrays, (R, 15724) repetitions or (15724,), one file per trial (an
      extracted MindEye webdataset, HF pscotti/naturalscenesdataset: <key>.nsdgeneral.npy; files ending in
      --suffix, default ".nsdgeneral.npy" when there are such files, else ".npy"), or one array (N, 15724) or
      (N, R, 15724). Our loader reads one file per input, so each sample of a single array is written to
      --out-dir/<index>.npy (default: <manifest folder>/fmri_npy) unchanged (the loader averages repetitions).
  --ids FILE    trial -> stimulus: a .npy of N ids in trial order (COCO ids; NSD 73k indices with --id-kind nsd),
      or a CSV with a `coco_id`/`cocoId` or an `nsd_id`/`nsdId`/`coco73k` column and, for a folder, a
      `trial`/`key`/`file` column naming the file (its name up to the suffix; without it rows go by position,
      files in sorted order). Without --ids, a folder's <key>.coco73k.npy (MindEye: the 0-based NSD image index)
      is used.
  --stim-info nsd_stim_info_merged.csv   NSD's stimulus table (columns nsdId, cocoId): maps NSD indices to COCO.
  --captions captions_train2017.json [captions_val2017.json]   NSD images come from both COCO 2017 splits.

Skipped: trials without a COCO id, COCO images without captions, arrays of the wrong shape or with NaN/inf.

Example:
  python data_prep/nsd_fmri.py --fmri nsd/train_subj01 --stim-info nsd/nsd_stim_info_merged.csv \\
      --captions coco/annotations/captions_train2017.json coco/annotations/captions_val2017.json \\
      --out nsd/fmri_train.jsonl --instruction nsd/fmri_instruct.jsonl
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

KEY_COLUMNS, COCO_COLUMNS, NSD_COLUMNS = ("trial", "key", "file"), ("coco_id", "cocoId"), ("nsd_id", "nsdId", "coco73k")


def coco_captions(paths: list[Path]) -> dict[int, list[str]]:
    """COCO ``captions_*.json`` files -> {image_id: [captions]}."""
    caps: dict[int, list[str]] = {}
    for path in paths:
        for ann in common.read_json(path)["annotations"]:
            if text := common.clean_caption(ann.get("caption")):
                caps.setdefault(int(ann["image_id"]), []).append(text)
    return caps


def stim_info(path: Path | None) -> dict[int, int]:
    """NSD image index (0-based nsdId) -> COCO id."""
    if path is None:
        return {}
    pairs = ((_number(row.get("nsdId")), _number(row.get("cocoId"))) for _, row in common.iter_csv(path) if row)
    return {nsd: coco for nsd, coco in pairs if nsd is not None and coco is not None}


def _number(value: object) -> int | None:
    try:
        return int(float(str(value).strip()))
    except (ValueError, OverflowError):  # '', 'nan', 'inf'
        return None


def table(args, keys: list[str]) -> list[tuple[str, int | None]]:
    """(kind "coco"/"nsd", id or None) per key, from --ids or the folder's <key>.coco73k.npy."""
    if args.ids is None:
        return [("nsd", _number(np.load(args.fmri / f"{k}.coco73k.npy").reshape(-1)[0]))
                if (args.fmri / f"{k}.coco73k.npy").is_file() else ("nsd", None) for k in keys]
    if args.ids.suffix == ".npy":
        ids = np.load(args.ids).reshape(-1)
        if len(ids) != len(keys):
            raise SystemExit(f"{args.ids}: {len(ids)} ids for {len(keys)} trials")
        return [(args.id_kind, _number(v)) for v in ids.tolist()]
    rows = [row for _, row in common.iter_csv(args.ids) if row]
    header = rows[0].keys() if rows else ()
    kind, column = next(((kind, c) for kind, cols in (("coco", COCO_COLUMNS), ("nsd", NSD_COLUMNS))
                         for c in cols if c in header), (None, None))
    if column is None:
        raise SystemExit(f"{args.ids}: needs one of the columns {COCO_COLUMNS + NSD_COLUMNS}")
    key_col = next((c for c in KEY_COLUMNS if c in header), None)
    if key_col:
        by_key = {r[key_col].strip().split(".")[0]: _number(r[column]) for r in rows}
        return [(kind, by_key.get(k)) for k in keys]
    if len(rows) != len(keys):
        raise SystemExit(f"{args.ids}: {len(rows)} rows for {len(keys)} trials and no {KEY_COLUMNS} column")
    return [(kind, _number(r[column])) for r in rows]


def samples(args) -> tuple[list[str], Callable[[int], Path | np.ndarray]]:
    """Trial keys and a getter: trial index -> its file (a folder) or its array (a single array)."""
    if args.fmri.is_dir():
        names = sorted(p.name for p in args.fmri.iterdir() if p.name.endswith(".npy"))
        suffix = args.suffix or (".nsdgeneral.npy" if any(n.endswith(".nsdgeneral.npy") for n in names) else ".npy")
        keys = [n[:-len(suffix)] for n in names if n.endswith(suffix) and not n.endswith(".coco73k.npy")]
        return keys, lambda i: args.fmri / f"{keys[i]}{suffix}"
    array = np.load(args.fmri, mmap_mode="r")  # (N, V) or (N, R, V), read sample by sample
    if array.ndim not in (2, 3) or array.shape[-1] != args.voxels:
        raise SystemExit(f"{args.fmri}: expected (N, [R,] {args.voxels}), got {array.shape}")
    return [f"{i:05d}" for i in range(array.shape[0])], lambda i: np.asarray(array[i])


def items(args, keys: list[str], get: Callable[[int], Path | np.ndarray], stims: list[tuple[str, int | None]], nsd_to_coco: dict[int, int],
          captions: dict[int, list[str]]) -> Iterator[common.Item]:
    out_dir = args.out_dir or args.out.parent / "fmri_npy"
    for i, key in enumerate(keys):
        kind, sid = stims[i]
        coco = sid if kind == "coco" else nsd_to_coco.get(sid) if sid is not None else None
        if coco is None:
            yield "no COCO id for trial"
            continue
        if coco not in captions:
            yield "no captions for the COCO image"
            continue
        path = sample = get(i)
        if isinstance(sample, Path):
            sample = np.load(path)
            if sample.ndim not in (1, 2) or sample.shape[-1] != args.voxels:
                yield "wrong fMRI shape"
                continue
        if not np.isfinite(sample).all():  # the loader would reject it
            yield "non-finite fMRI values"
            continue
        if not isinstance(path, Path):
            path = out_dir / f"{key}.npy"
            out_dir.mkdir(parents=True, exist_ok=True)
            np.save(path, sample)
        row = common.caption_row(f"nsd-{key}", "fmri", path, captions[coco])
        row["coco_id"] = coco  # kept as an extra key: evaluation scripts match predictions to COCO ids
        yield row


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--fmri", type=Path, required=True, help="folder of per-trial .npy, or one (N, [R,] V) .npy")
    p.add_argument("--ids", type=Path, help="trial -> COCO id / NSD index: .npy or .csv")
    p.add_argument("--id-kind", choices=("coco", "nsd"), default="coco", help="what a .npy --ids holds")
    p.add_argument("--stim-info", type=Path, help="nsd_stim_info_merged.csv (nsdId -> cocoId)")
    p.add_argument("--captions", type=Path, nargs="+", required=True, help="COCO captions_*.json")
    p.add_argument("--suffix", help="folder: file name ending of the fMRI arrays")
    p.add_argument("--out-dir", type=Path, help="single array: where per-sample .npy files are written")
    p.add_argument("--voxels", type=int, default=15724, help="voxels per sample (default: %(default)s)")
    args = p.parse_args(argv)
    # everything that can reject the inputs as a whole runs before the manifest is opened
    keys, get = samples(args)
    stims, nsd_to_coco = table(args, keys), stim_info(args.stim_info)
    if not nsd_to_coco and any(kind == "nsd" and sid is not None for kind, sid in stims):
        p.error("the trials name NSD image indices: --stim-info nsd_stim_info_merged.csv is needed")
    captions = coco_captions(args.captions)
    return common.finish(args, items(args, keys, get, stims, nsd_to_coco, captions))


if __name__ == "__main__":
    sys.exit(main())
