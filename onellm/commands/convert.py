"""``onellm convert``: the released OneLLM-7B checkpoint -> a model directory (see ``onellm.convert``)."""
from __future__ import annotations

import argparse
import sys
import time

from .common import PRESETS

DTYPE_CHOICES = ("keep", "bf16", "fp16", "fp32")  # onellm.convert.DTYPES (a test holds them equal)

HELP = "convert the released OneLLM-7B checkpoint (consolidated.00-of-01.pth) into a model directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--official", nargs="+", required=True, metavar="PATH",
                   help="consolidated.00-of-01.pth, or its 10 shards .s0.pth ... .s9.pth (files or a directory)")
    p.add_argument("--tokenizer", required=True, metavar="PATH", help="the LLaMA-2 tokenizer.model")
    p.add_argument("--out", required=True, metavar="DIR", help="model directory to write (replaced atomically)")
    p.add_argument("--clip", metavar="PATH",
                   help="CLIP ViT-L/14 weights, needed only when the checkpoint has no llma.clip.visual.* keys: "
                        "open_clip safetensors / state dict, or OpenAI's TorchScript ViT-L-14.pt (default: the "
                        "checkpoint's own)")
    p.add_argument("--dtype", default="keep", choices=list(DTYPE_CHOICES),
                   help="cast floating-point weights (default: keep each tensor's dtype)")
    p.add_argument("--max-shard-size", default="5GB", help="safetensors shard size (default: 5GB)")
    p.add_argument("--preset", default="onellm-7b", choices=PRESETS,
                   help="target config, with the released checkpoint's switches written in (default: onellm-7b)")
    p.add_argument("--legacy-kv-offset", action="store_true",
                   help="write legacy_kv_offset=true: decode exactly like the released scripts (KV offset bug)")


def run(args: argparse.Namespace) -> int:
    from ..convert import REPORT_FILE, ConversionError, convert_checkpoint, official_config

    config = official_config(args.preset)
    if args.legacy_kv_offset:
        config.legacy_kv_offset = True
    start = time.perf_counter()
    last = [-1]

    def progress(done: int, total: int) -> None:
        tenth = done * 10 // total
        if tenth != last[0] and tenth > 0:
            last[0] = tenth
            print(f"  {done}/{total} tensors ({time.perf_counter() - start:.0f} s)", flush=True)

    try:
        report = convert_checkpoint(args.official, args.tokenizer, args.out, clip=args.clip, dtype=args.dtype,
                                    max_shard_size=args.max_shard_size, config=config, progress=progress)
    except ConversionError as exc:
        print(f"onellm convert: error: {exc}", file=sys.stderr)
        return 2
    parts = ", ".join(f"{k} {v}" for k, v in report["keys_per_part"].items())
    print(f"converted {report['keys']['converted']} tensors ({parts}); {report['rope_permuted']['count']} q/k "
          f"permuted for RoPE; dropped {report['keys']['dropped']} CLIP text-tower keys")
    print(f"CLIP from {report['clip']['source']}: {', '.join(report['clip']['files'])}")
    if report["clip"].get("ignored_clip_argument"):
        print(f"note: --clip {report['clip']['ignored_clip_argument']} ignored: the checkpoint has its own CLIP")
    print(f"wrote {args.out} ({report['bytes_written'] / 1e9:.2f} GB, {len(report['weights'])} file(s), "
          f"dtypes {report['dtypes_written']}) in {time.perf_counter() - start:.0f} s; report: {REPORT_FILE}")
    return 0
