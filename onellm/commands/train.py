"""``onellm train RECIPE [key=value ...] [--dry-run]``: run a training stage (single process; the same code runs
under ``accelerate launch`` / ``deepspeed`` through train/train.py). Overrides may come before or after the
options: ``onellm train RECIPE --dry-run optimizer.lr=1e-4``."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML (train/recipes/...)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="recipe overrides (values are YAML), e.g. optimizer.lr=1e-4 datasets.0.repeat=2")
    p.add_argument("--dry-run", action="store_true",
                   help="check that the starting model and every manifest exist, print the trainable parameters "
                        "per part and a peak-memory estimate; allocates nothing, trains nothing")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="--dry-run: the device to estimate for (auto: a GPU when there is one, else the CPU)")
    p.add_argument("--world-size", type=int, default=None,
                   help="--dry-run: ranks sharing ZeRO states (default: $WORLD_SIZE, else 1)")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed


def run(args: argparse.Namespace) -> int:
    from ..training.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from ..training.estimate import check_paths, print_estimate

        check_paths(recipe)
        print_estimate(recipe, None if args.device == "auto" else args.device, args.world_size)
        return 0
    from ..training.trainer import train

    result = train(recipe)
    if result.already_complete:
        return 0  # train() said so; nothing was changed
    final = f"{result.losses[-1]:.4f}" if result.losses else "n/a"
    print(f"done: {result.steps} steps in {result.seconds:.1f} s; final loss {final}; {result.skipped} samples "
          f"skipped, {result.skipped_batches} micro-batches and {result.skipped_steps} steps with nothing to learn; "
          f"model -> {result.model_dir}; curves: onellm plot {result.output_dir}")
    return 0
