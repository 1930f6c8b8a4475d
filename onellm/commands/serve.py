"""``onellm serve``: vLLM's OpenAI-compatible server (chat completions with images, audio, video) on a OneLLM model
directory; runs where vLLM 0.32.0 is installed (docs/vllm.md). The work is :mod:`onellm.vllm.serve`.

    onellm serve --model models/onellm-7b --port 8000
    curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' -d '{"model": "onellm-7b",
      "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}},
      {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64,..."}}, {"type": "text", "text": "What is it?"}]}]}'

Arguments after ``--`` go to ``vllm serve`` unchanged (e.g. ``-- --gpu-memory-utilization 0.8``).
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="port")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on a GPU, fp16 on GPUs without bf16, fp32 on a CPU), "
                                                   "fp32, bf16 or fp16")
    p.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N", help="GPUs the model is sharded over")
    p.add_argument("--max-num-seqs", type=int, default=64, metavar="N", help="requests decoded at the same time")
    p.add_argument("--kv-cache-gib", type=int, default=None, metavar="GIB",
                   help="on a CPU: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE; default 2)")
    p.add_argument("--served-model-name", default=None, help="the API's model name (default: the folder's name)")
    p.add_argument("--max-new-tokens", type=int, default=128,
                   help="default max_tokens of a request (a request's own value wins)")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="default temperature (the released 0.1; a request's own value wins, 0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.75, help="default top_p (a request's own value wins)")
    p.add_argument("--seed", type=int, default=0, help="the engine's sampling seed")
    p.add_argument("vllm_args", nargs="*", default=[], metavar="-- VLLM_ARG",
                   help="after --: more `vllm serve` arguments")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..inference import check_engine

    try:
        check_engine("vllm")
    except UsageError as exc:
        raise UsageError(str(exc).replace("--engine vllm", "onellm serve", 1)) from None
    from ..vllm.serve import serve

    return serve(args.model, kv_cache_gib=args.kv_cache_gib, extra=list(args.vllm_args), host=args.host,
                 port=args.port, dtype=args.dtype, tensor_parallel_size=args.tensor_parallel_size,
                 max_num_seqs=args.max_num_seqs, served_model_name=args.served_model_name,
                 max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                 seed=args.seed)


def main(argv: list[str] | None = None) -> int:
    """``python -m onellm.commands.serve ...`` (the same as ``onellm serve ...``)."""
    parser = argparse.ArgumentParser(prog="onellm serve", description=__doc__.splitlines()[0])
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
