"""``onellm merge-lora``: fold a LoRA adapter directory into its base model -> a plain model directory."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", help="base model directory (default: the one recorded in the adapter directory)")
    p.add_argument("--adapter", required=True, help="adapter directory (the output/model of a LoRA run)")
    p.add_argument("--out", required=True, help="merged model directory to write")
    p.add_argument("--dtype", default="keep", choices=["keep", "fp32", "bf16", "fp16"],
                   help="dtype of the merged weights (keep: the base model's)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..adapters import base_of, merge_lora
    from ..data.text import load_tokenizer
    from ..model import OneLLM
    from ..processing import OneLLMProcessor

    dtype = {"keep": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    base = args.base or base_of(args.adapter)
    model = OneLLM.from_pretrained(base, dtype=dtype, adapter=args.adapter)
    merge_lora(model)
    model.save_pretrained(args.out, processor=OneLLMProcessor.for_config(model.config, load_tokenizer(args.adapter)))
    print(f"merged {args.adapter} into {base} -> {args.out}")
    return 0
