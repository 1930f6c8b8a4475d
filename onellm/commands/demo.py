"""``onellm demo``: a web demo (gradio) for every modality of a model: uploads, streaming multi-turn chat, stop,
reset, sampling controls, examples from the synthetic world. See docs/demo.md.

Needs the ``demo`` extra (``pip install "onellm[demo]"``). Serves on 127.0.0.1 unless ``--host`` says otherwise;
nothing is fetched from the internet (no share link, no analytics).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--device", default="auto", help="auto (GPU if there is one, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    p.add_argument("--concurrency", type=int, default=4,
                   help="chat turns generated at once; turns waiting together run as one batch (default 4)")
    p.add_argument("--batch-window-ms", type=float, default=20.0,
                   help="how long an idle server waits for more turns to batch with the first (default 20 ms)")
    p.add_argument("--queue-size", type=int, default=64, help="turns that may wait in gradio's queue (default 64)")
    p.add_argument("--cache-size", type=int, default=32, help="encoded uploads kept in memory (default 32)")
    p.add_argument("--examples-dir", default=None,
                   help="where to write the example files (default: a temporary folder removed at exit)")
    p.add_argument("--no-examples", action="store_true", help="no examples from the synthetic world")
    p.add_argument("--max-new-tokens", type=int, default=128, help="initial value of the UI's control")
    p.add_argument("--temperature", type=float, default=0.1, help="initial value of the UI's control (0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.75, help="initial value of the UI's control")
    p.add_argument("--template", choices=["chat", "none"], default="chat",
                   help="initial prompt: chat (the conversation template) or none (the raw question; "
                        "alignment-only models continue it as a caption, as onellm infer --template none)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def _check_gradio() -> None:
    from ..errors import UsageError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError('the web demo needs gradio: pip install -c constraints.txt "onellm[demo]" '
                         "(or run .ci/demo-deps.sh)") from None


def model_label(model_dir: str) -> str:
    """How the page names the model: its folder, with the parent when the folder is just "model"
    (``runs/qs/stage2/model`` -> ``stage2/model``)."""
    path = Path(model_dir).resolve()
    return f"{path.parent.name}/{path.name}" if path.name == "model" else path.name


def build(args: argparse.Namespace, examples_dir: str | None):
    """(gradio Blocks, backend) for the parsed arguments: the model loaded, examples written to ``examples_dir``."""
    from ..demo.app import DemoApp
    from ..demo.backend import DemoBackend
    from ..demo.examples import synthetic_examples
    from ..generation import GenerationConfig

    backend = DemoBackend.from_pretrained(args.model, args.device, args.dtype, max_batch=args.concurrency,
                                          batch_window_s=args.batch_window_ms / 1000.0, cache_size=args.cache_size)
    examples = [] if examples_dir is None else synthetic_examples(backend.config, examples_dir)
    defaults = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    title = f"OneLLM · {model_label(args.model)} ({backend.config.name})"
    app = DemoApp(backend, examples, defaults, concurrency=args.concurrency, queue_size=args.queue_size, title=title,
                  template=args.template)
    return app.build(), backend


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    _check_gradio()
    import torch

    from ..demo.app import launch

    torch.manual_seed(args.seed)
    own_dir = None
    examples_dir = None
    if not args.no_examples:
        examples_dir = args.examples_dir or (own_dir := tempfile.mkdtemp(prefix="onellm-demo-examples-"))
    try:
        blocks, backend = build(args, examples_dir)
        print(f"OneLLM demo: http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
        try:
            launch(blocks, args.host, args.port, allowed_paths=[examples_dir] if examples_dir else [])
        except KeyboardInterrupt:
            pass
        finally:
            backend.close()
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m onellm.commands.demo --model DIR`` (the same as ``onellm demo``)."""
    parser = argparse.ArgumentParser(prog="onellm demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Exception as exc:
        from ..errors import is_user_error, one_line

        if is_user_error(exc):
            print(f"onellm demo: error: {one_line(exc)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
