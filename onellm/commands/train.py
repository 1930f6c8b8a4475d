"""``onellm train RECIPE [key=value ...]``: run a training stage (single process; the same code runs under
``accelerate launch`` / ``deepspeed`` through train/train.py)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML (train/recipes/...)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides, e.g. optimizer.lr=1e-4")
    p.add_argument("--dry-run", action="store_true",
                   help="print trainable parameters per part and a peak-memory estimate, allocate nothing")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="--dry-run: estimate for this device (default: a GPU if there is one)")
    p.add_argument("--world-size", type=int, default=None, help="--dry-run: ranks sharing ZeRO states")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed


def run(args: argparse.Namespace) -> int:
    from ..training.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from ..training.estimate import print_estimate

        print_estimate(recipe, args.device, args.world_size)
        return 0
    from ..training.trainer import train

    result = train(recipe)
    if result.already_complete:
        return 0  # train() said so; nothing was changed
    final = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    print(f"done: {result.steps} steps in {result.seconds:.1f} s; final loss {final}; {result.skipped} samples "
          f"skipped, {result.skipped_batches} micro-batches and {result.skipped_steps} steps with nothing to learn; "
          f"model -> {result.model_dir}")
    return 0
