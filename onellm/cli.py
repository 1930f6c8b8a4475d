"""``onellm <command>``: one entry point, one subcommand per job.

Each subcommand lives in its own module and exposes ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them up, importing a command's module when it is used (keeps ``--help`` fast).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("onellm.quickstart", "the whole OneLLM pipeline in miniature on the synthetic world (CPU, minutes)"),
    "bench": ("onellm.bench", "throughput, MFU and same-run ratios (feature cache, padding, batching, loading)"),
    "cache-features": ("onellm.commands.cache_features", "encode frozen-path inputs (image/video/depth/normal) once"),
    "smoke": ("onellm.commands.smoke", "build the tiny model and run one input of every modality through it"),
    "synth": ("onellm.data.synth", "generate the synthetic 8-modality world (files + manifests)"),
    "init": ("onellm.commands.init", "assemble a fresh model directory from local pretrained parts"),
    "infer": ("onellm.commands.infer", "batch captioning / QA over a manifest (resumable JSONL out)"),
    "chat": ("onellm.commands.chat", "interactive terminal chat about one or more inputs"),
    "convert": ("onellm.commands.convert", "convert the released OneLLM-7B checkpoint into a model directory"),
    "merge-lora": ("onellm.commands.merge_lora", "fold a LoRA adapter into its base model (plain model directory)"),
    "eval": ("onellm.commands.eval", "run benchmarks (eval/benchmarks/*.py) on a model and compare with the paper"),
    "train": ("onellm.commands.train", "run a training stage from a recipe YAML (key=value overrides)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onellm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        _lazy_arguments(p, module)
    return parser


def _lazy_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    # Only the chosen command's module is imported: peek at argv to find it.
    if len(sys.argv) > 1 and COMMANDS.get(sys.argv[1], (None,))[0] == module:
        importlib.import_module(module).add_arguments(parser)
    else:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = build_parser().parse_args()
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
