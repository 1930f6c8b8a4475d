"""``onellm <command>``: one entry point, one subcommand per job.

Each subcommand lives in its own module and exposes ``add_arguments(parser)`` and ``run(args) -> int``;
this file only wires them up, importing a command's module when it is used: ``onellm --help`` and every
``onellm <command> --help`` import neither torch nor transformers (a test holds each under a second).

Every option's help shows its default (``HelpFormatter``). A command's options and positional words may come in any
order (``onellm train RECIPE --dry-run key=value``).

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
    "env": ("onellm.commands.env", "what this machine has: Python, torch, CUDA, GPUs, transformers, DeepSpeed ..."),
    "bench": ("onellm.commands.bench", "throughput, MFU and same-run ratios (feature cache, padding, batching, loading)"),
    "cache-features": ("onellm.commands.cache_features", "encode frozen-path inputs (image/video/depth/normal) once"),
    "smoke": ("onellm.commands.smoke", "build the tiny model and run one input of every modality through it"),
    "synth": ("onellm.data.synth", "generate the synthetic 8-modality world (files + manifests)"),
    "check-manifest": ("onellm.commands.check_manifest",
                       "validate a manifest (every bad line) and, with --media, decode every input file"),
    "init": ("onellm.commands.init", "assemble a fresh model directory from local pretrained parts"),
    "infer": ("onellm.commands.infer", "batch captioning / QA over a manifest (resumable JSONL out)"),
    "chat": ("onellm.commands.chat", "interactive terminal chat about one or more inputs"),
    "serve": ("onellm.commands.serve", "vLLM's OpenAI-compatible server with OneLLM (needs vLLM: docs/vllm.md)"),
    "demo": ("onellm.commands.demo", "web demo (gradio) for every modality of a model, on 127.0.0.1"),
    "convert": ("onellm.commands.convert", "convert the released OneLLM-7B checkpoint into a model directory"),
    "merge-lora": ("onellm.commands.merge_lora", "fold a LoRA adapter into its base model (plain model directory)"),
    "eval": ("onellm.commands.eval", "run benchmarks (eval/benchmarks/*.py) on a model and compare with the paper"),
    "train": ("onellm.commands.train", "run a training stage from a recipe YAML (key=value overrides)"),
    "plot": ("onellm.commands.plot", "loss, lr, grad norm and throughput curves of training runs (PNG, runs overlaid)"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` after every option's help, unless the text already says what the default is, or there is
    none to show (a flag, a required option, an option that is simply absent when not given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or action.required or not action.option_strings
                or default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default)):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _command_word(argv: list[str]) -> str | None:
    """The command named in ``argv``: the first word that is not an option (top-level options take no value)."""
    words = [a for a in argv if not a.startswith("-")][:1]
    return words[0] if words else None


def build_parser(argv: list[str] | None = None, load: str | bool | None = None) -> argparse.ArgumentParser:
    """The ``onellm`` parser. Only the command named in ``argv`` (default: ``sys.argv[1:]``) gets its real
    arguments (its module is imported); ``load=True`` gives every command its arguments (tests, docs), a command
    name gives that one's."""
    from .version import __version__

    chosen = _command_word(sys.argv[1:] if argv is None else argv) if load is None else load
    parser = argparse.ArgumentParser(prog="onellm", formatter_class=HelpFormatter,
                                     description="OneLLM (CVPR 2024): one entry point, one subcommand per job; "
                                                 "`onellm COMMAND --help` describes each.")
    parser.add_argument("--version", action="version", version=f"onellm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also ONELLM_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parser.commands = {}  # name -> its sub-parser
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        p.set_defaults(_module=module)
        # SUPPRESS: an absent sub-command flag must not overwrite a top-level --debug
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks (also ONELLM_DEBUG=1)")
        if chosen is True or chosen == name:
            importlib.import_module(module).add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        parser.commands[name] = p
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``onellm`` arguments; a command's options and its positional words may interleave."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse stops filling `nargs="*"` positionals at the first option (`train R --dry-run k=v` leaves
        # `k=v` over): parse the command's own words again, options and positionals intermixed
        name = args.command
        words = argv[argv.index(name) + 1:]
        namespace = argparse.Namespace(command=name, debug=args.debug)
        args = parser.commands[name].parse_intermixed_args(words, namespace)
    return args


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
    args = parse_args()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        if debugging(args):
            raise
        print(f"onellm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `onellm env | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail again
        return 141
    except Exception as exc:
        from .errors import UserError, is_user_error

        if debugging(args) or not is_user_error(exc):
            raise
        report(args.command, exc)
        return getattr(exc, "exit_code", 2) if isinstance(exc, UserError) else 2


if __name__ == "__main__":
    sys.exit(main())
