"""``onellm cache-features``: encode the frozen-path inputs (image, video, depth, normal) of a manifest once."""
from __future__ import annotations

import argparse

from .common import DEVICE_HELP


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory (its CLIP encodes the inputs)")
    p.add_argument("--manifest", required=True, nargs="+", help="manifest(s) whose inputs to encode")
    p.add_argument("--out", required=True, help="cache directory (resumable); the recipe's feature_cache")
    p.add_argument("--modalities", nargs="+", default=None, metavar="MODALITY",
                   help="encode only these modalities' inputs (default: every frozen-path one); e.g. video alone "
                        "when images are randomly cropped in training and must keep running CLIP")
    p.add_argument("--batch-size", type=int, default=32, help="inputs encoded together")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading inputs")
    p.add_argument("--shard-size", type=int, default=2048, help="features per safetensors shard")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--dtype", default="auto",
                   help="the dtype training will run the UPM in (auto: bf16 on a GPU, fp32 on a CPU)")


def run(args: argparse.Namespace) -> int:
    from ..data.manifest import read_manifest
    from ..features import cache_features
    from ..inference import resolve_device, resolve_dtype
    from ..model import OneLLM

    from ..features import cacheable
    from ..modalities import get as modality_definition

    wanted = None
    if args.modalities:
        try:
            wanted = {modality_definition(m).name for m in args.modalities}
        except ValueError as exc:
            raise SystemExit(f"onellm cache-features: --modalities: {exc}") from None
        not_frozen = sorted(m for m in wanted if not cacheable(m))
        if not_frozen:
            raise SystemExit(f"onellm cache-features: --modalities {' '.join(not_frozen)}: these reach CLIP through "
                             "a trainable tokenizer, so their features change while training; drop them")
    device = resolve_device(args.device)
    model = OneLLM.from_pretrained(args.model, device=device, dtype=resolve_dtype(args.dtype, device))
    records = [r for m in args.manifest for r in read_manifest(m)]
    counts = cache_features(model, records, args.out, args.batch_size, args.num_workers, args.shard_size,
                            modalities=wanted)
    print(f"{args.out}: {counts['cached']} features ({counts['new']} new), {counts['failed']} inputs failed to load")
    return 0
