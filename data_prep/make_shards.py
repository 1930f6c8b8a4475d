#!/usr/bin/env python3
"""Manifests -> webdataset tar shards for training at scale; --verify decodes every member of shards; --index
indexes shards (img2dataset / video2dataset output) ahead of a run.

Write (one folder per modality key under --out, `<key>/000000.tar ...` + `<key>/shards.json`):
  --manifest FILE [FILE ...]   our JSONL manifests (any modality: image, video, audio, point, depth/normal with
      their paired RGB, imu with its timestamps and window, fmri). Every input file and path option (`rgb`,
      `timestamps`) becomes a member of the sample, other options (imu start/end) go to its .json; the caption to
      .txt (the first) and .json (all). Records keep the manifest's order. Members: `<n>.jpg|mp4|wav|npy|ply...`
      for one-input records whose loader needs no option (the img2dataset layout), else `<n>.<modality>.<ext>`
      + `<n>.<option>.<ext>` (`000017.depth.png` + `000017.rgb.png`; `000017.npy` + `000017.timestamps.npy`).
  --modality KEY               write only records of these modality keys (repeatable; default: all but text)
  --max-count N / --max-size BYTES   start a new shard after N samples (10000) or BYTES (1e9)
  --verify                     decode every input with onellm's loaders first; unusable records are skipped and
      counted by reason ("unusable video: empty file (0 bytes)", "unusable image: cannot decode image").

Verify (exit 1 when a sample cannot be used): --verify SHARDS ...  (tar files, folders, brace patterns or a
  shards.json) streams the shards with webdataset and decodes every sample's inputs and caption exactly as training
  does; prints `verified N samples: ok K, bad M: reason (count)` and the first bad ones with shard and key. The
  modality comes from the folder's shards.json, else --modality (img2dataset output: --modality image).

Index: --index SHARDS ... [--workers 8] writes each shard's member index (`<shard>.idx.npz`, or in
  $ONELLM_INDEX_CACHE when the folder is read-only); training builds missing ones itself, this does it ahead and in
  parallel.

Examples:
  python data_prep/make_shards.py --manifest wavcaps/wavcaps.jsonl --out shards/wavcaps --verify
  python data_prep/make_shards.py --manifest cc3m/rgbd.jsonl --out shards/cc3m_depth --max-count 5000
  python data_prep/make_shards.py --verify shards/wavcaps/audio
  python data_prep/make_shards.py --verify 'laion/{00000..00009}.tar' --modality image
  python data_prep/make_shards.py --index 'laion/{00000..41407}.tar' --workers 16
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # data_prep/ is not a package: common.py lies beside
import common  # noqa: E402

from onellm.data.manifest import Record, iter_manifest  # noqa: E402


def records(paths: list[Path]) -> Iterator[Record | str]:
    """Every record of the manifests, streamed; a bad line is one skip reason (its problem in a few words)."""
    for path in paths:
        for n, rec, problem in iter_manifest(path):
            if rec is None:
                if problem and n <= 5 or problem and problem.startswith("not UTF-8"):
                    print(f"{path}: line {n}: {problem}", file=sys.stderr)
                yield "bad manifest line"
            else:
                yield rec


def write_mode(args) -> int:
    from onellm.data.shards.writer import write_shards

    check = None
    if args.verify is not None:
        config = common.verify_config(args.verify_config)

        def check(record: Record) -> tuple[str, str] | None:
            return common.unusable([r.as_source() for r in record.inputs], config)

    source = ", ".join(str(m) for m in args.manifest)
    report = write_shards(records(args.manifest), args.out, max_count=args.max_count, max_bytes=args.max_size,
                          check=check, source=source, keys=args.modality)
    for example in report.examples[:5]:
        print(f"skipped {example}", file=sys.stderr)
    print(f"{args.out}: {report.summary()}")
    if not report.descriptors:
        print(f"{args.out}: no shards written", file=sys.stderr)
        return 1
    for key, desc in report.descriptors.items():
        print(f"  datasets: - {{shards: {desc.parent}, modality: {key}}}")
    return 0


def verify_mode(args) -> int:
    from onellm.data.errors import InputError
    from onellm.data.shards.decode import decode_input
    from onellm.data.shards.index import ShardError, expand, iter_samples
    from onellm.data.shards.members import assemble, canonical_key

    try:
        paths, descriptor = expand(args.verify, Path.cwd())
    except ShardError as exc:
        print(exc, file=sys.stderr)
        return 1
    keys = args.modality or ([descriptor["modality"]] if descriptor and descriptor.get("modality") else None)
    if keys and len(keys) == 1:
        keys = [canonical_key(keys[0])]
    else:
        print("--verify needs the shards' modality: a shards.json beside them, or one --modality KEY",
              file=sys.stderr)
        return 1
    config = common.verify_config(args.verify_config)
    caption_key = args.caption_key if args.caption_key != "auto" else (descriptor or {}).get("caption_key", "auto")
    errors: list[str] = []
    reasons: Counter[str] = Counter()
    ok = bad = 0
    examples: list[str] = []
    for sample in iter_samples(paths, errors):
        key, url = sample.pop("__key__"), sample.pop("__url__")
        sample.pop("__local_path__", None)
        try:
            parsed = assemble(url, key, sample, keys[0], None if args.no_caption else caption_key)
            for item in parsed.inputs:
                decode_input(item.modality, item.member, item.options, train=False, config=config)
            ok += 1
        except Exception as exc:  # every failure is one bad sample, named by shard and key
            bad += 1
            text, prefix = str(exc), f"{url}:{key}"
            if isinstance(exc, InputError):
                problem = exc.problem
            else:
                problem = text[len(prefix):].split(": ", 1)[-1] if text.startswith(prefix) else text
            reasons[common.short_reason(problem)] += 1
            if len(examples) < 10:
                examples.append(text if text.startswith(prefix) else f"{prefix}: {text}")
    for err in errors:
        bad += 1
        reasons["unreadable tar"] += 1
        if len(examples) < 10:
            examples.append(err)
    for example in examples:
        print(f"bad: {example}", file=sys.stderr)
    line = f"verified {ok + bad} samples in {len(paths)} shard(s): ok {ok}, bad {bad}"
    if reasons:
        line += ": " + ", ".join(f"{r} ({n})" for r, n in reasons.most_common())
    print(line)
    return 1 if bad else 0


def index_mode(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from onellm.data.shards.index import ShardError, expand, shard_index

    try:
        paths, _ = expand(args.index, Path.cwd())
    except ShardError as exc:
        print(exc, file=sys.stderr)
        return 1
    total, problems = 0, []
    with ThreadPoolExecutor(max(1, args.workers)) as pool:
        for index in pool.map(shard_index, paths):
            total += len(index)
            problems += index.problems
    for p in problems[:20]:
        print(f"warning: {p}", file=sys.stderr)
    print(f"indexed {len(paths)} shard(s): {total} samples" + (f", {len(problems)} problem(s)" if problems else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", type=Path, nargs="+", help="manifest(s) to write as shards")
    p.add_argument("--out", type=Path, help="output folder (one sub-folder per modality key)")
    p.add_argument("--modality", action="append", help="only these modality keys (repeatable); --verify: the key")
    p.add_argument("--max-count", type=int, default=10_000, help="samples per shard (default: %(default)s)")
    p.add_argument("--max-size", type=float, default=1e9, help="bytes per shard (default: %(default)g)")
    p.add_argument("--verify", nargs="*", metavar="SHARDS",
                   help="with --manifest: decode every input before writing; with SHARDS: decode every member")
    p.add_argument("--caption-key", default="auto", help="--verify: where captions are (auto, txt, json.<field>)")
    p.add_argument("--no-caption", action="store_true", help="--verify: shards without captions")
    p.add_argument("--index", nargs="+", metavar="SHARDS", help="index these shards ahead of a run")
    p.add_argument("--workers", type=int, default=8, help="--index: threads (default: %(default)s)")
    common.add_verify_arguments(p, flag=False)
    args = p.parse_args(argv)
    if args.index:
        return index_mode(args)
    if args.verify and not args.manifest:
        return verify_mode(args)
    if not args.manifest or args.out is None:
        p.error("give --manifest and --out (write), --verify SHARDS (verify) or --index SHARDS (index)")
    if args.verify:
        p.error("--verify takes no shards when writing (it checks the inputs of --manifest)")
    if args.modality:
        from onellm.data.shards.members import canonical_key

        args.modality = [canonical_key(m) for m in args.modality]
    args.verify = None if args.verify is None else True
    return write_mode(args)


if __name__ == "__main__":
    sys.exit(main())
