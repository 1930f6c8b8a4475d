"""``onellm infer``: batch captioning / QA over a manifest, resumable, multi-rank."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_device_argument, add_dtype_argument

    p.add_argument("--max-new-tokens", type=int, default=128, help="longest answer, in tokens")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="sampling temperature; 0 = greedy (the released scripts use 0.1)")
    p.add_argument("--top-p", type=float, default=0.75, help="nucleus sampling: the smallest token set of this mass")
    add_device_argument(p)
    add_dtype_argument(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--input", required=True, help="requests manifest (JSONL)")
    p.add_argument("--output", required=True, help="answers JSONL (appended; ids already there are skipped)")
    p.add_argument("--batch-size", type=int, default=8, help="requests generated together")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading inputs")
    p.add_argument("--template", choices=["chat", "none"], default="chat",
                   help="chat: the conversation template; none: raw prompt (alignment-only models caption)")
    add_generation_arguments(p)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..generation import GenerationConfig
    from ..inference import infer_manifest, print_summary

    torch.manual_seed(args.seed)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    summary = infer_manifest(args.model, args.input, args.output, device=args.device, dtype=args.dtype,
                             batch_size=args.batch_size, gen=gen, num_workers=args.num_workers,
                             template=args.template)
    print_summary(summary, Path(args.output))
    return 1 if summary.all_failed else 0
