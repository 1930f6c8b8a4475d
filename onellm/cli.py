"""``onellm <command>``: one entry point, one subcommand per job.

Each subcommand lives in its own module and exposes ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them up, importing a command's module when it is used (keeps ``--help`` fast).

Errors: a user mistake (``onellm.errors.is_user_error``: a missing file, a bad recipe key, a corrupt checkpoint, a
read-only or full disk ...) prints ``onellm <command>: error: <message>`` on stderr and exits 2; ``--debug`` (before
or after the command) or ``ONELLM_DEBUG=1`` shows the traceback instead. Anything else is a bug and keeps its
traceback.
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
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also ONELLM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # SUPPRESS: an absent sub-command flag must not overwrite a top-level --debug
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        _lazy_arguments(p, module)
    return parser


def _lazy_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    # Only the chosen command's module is imported: peek at argv to find it (the first word after the options).
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:1]
    if words and COMMANDS.get(words[0], (None,))[0] == module:
        importlib.import_module(module).add_arguments(parser)
    else:
        parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def debugging(args: argparse.Namespace | None = None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("ONELLM_DEBUG", "") not in ("", "0")


def report(command: str, exc: BaseException, stream=None) -> None:
    """``onellm <command>: error: <first line>``, then any further lines of the message (a manifest's bad lines)."""
    from .errors import one_line

    stream = stream or sys.stderr
    first, *rest = one_line(exc).splitlines() or [type(exc).__name__]
    print(f"onellm {command}: error: {first}", file=stream)
    for line in rest:
        print(line, file=stream)
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = build_parser().parse_args()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        if debugging(args):
            raise
        print(f"onellm {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from .errors import UserError, is_user_error

        if debugging(args) or not is_user_error(exc):
            raise
        report(args.command, exc)
        return getattr(exc, "exit_code", 2) if isinstance(exc, UserError) else 2


if __name__ == "__main__":
    sys.exit(main())
