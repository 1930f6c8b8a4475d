"""``onellm infer``: batch captioning / QA over a manifest, resumable, multi-rank, on the HF or the vLLM engine."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ENGINE_HELP = ("hf: the HF model's generate (this environment); vllm: vLLM 0.32 (paged KV cache, continuous "
               "batching; its own environment, docs/vllm.md). Same manifest in, same JSONL out, same resume")


def add_generation_arguments(p: argparse.ArgumentParser) -> None:
    from .common import add_device_argument, add_dtype_argument

    p.add_argument("--max-new-tokens", type=int, default=128, help="longest answer, in tokens")
    p.add_argument("--temperature", type=float, default=0.1,
                   help="sampling temperature; 0 = greedy (the released scripts use 0.1)")
    p.add_argument("--top-p", type=float, default=0.75, help="nucleus sampling: the smallest token set of this mass")
    add_device_argument(p)
    add_dtype_argument(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed")


def add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """The engine choice and the vLLM engine's options (importable without torch or vLLM)."""
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf", help=ENGINE_HELP)
    p.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N",
                   help="vllm: GPUs one engine shards the model over")
    p.add_argument("--data-parallel-size", type=int, default=1, metavar="N",
                   help="N ranks, each with its own model / engine and 1/N of the requests (relaunches this "
                        "command under torch.distributed.run; the same as torchrun --nproc-per-node N)")
    p.add_argument("--max-num-seqs", type=int, default=64, metavar="N",
                   help="vllm: requests the engine decodes at the same time")
    p.add_argument("--chunk-size", type=int, default=None, metavar="N",
                   help="vllm: requests per engine call; their lines are written (fsynced) before the next call, "
                        "so a kill loses at most one chunk (default: 4 x --max-num-seqs)")
    p.add_argument("--kv-cache-gib", type=int, default=None, metavar="GIB",
                   help="vllm on a CPU: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE; default 2); a GPU sizes it "
                        "by vLLM's memory utilisation")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--input", required=True, help="requests manifest (JSONL)")
    p.add_argument("--output", required=True, help="answers JSONL (appended; ids already there are skipped)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="hf: requests generated together; vllm: requests per loader batch")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading inputs")
    p.add_argument("--template", choices=["chat", "none"], default="chat",
                   help="chat: the conversation template; none: raw prompt (alignment-only models caption)")
    add_generation_arguments(p)
    add_engine_arguments(p)


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def relaunch_data_parallel(n: int, argv: list[str]) -> int:
    """Run this ``onellm`` command as ``n`` ranks (``torch.distributed.run --standalone``); its exit code."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
           "-m", "onellm.cli", *without_option(argv, "--data-parallel-size")]
    return subprocess.call(cmd)


def engine_options(args: argparse.Namespace) -> dict:
    return {"tensor_parallel_size": args.tensor_parallel_size, "max_num_seqs": args.max_num_seqs,
            "chunk_size": args.chunk_size, "kv_cache_gib": args.kv_cache_gib, "seed": args.seed}


def check_parallel(args: argparse.Namespace) -> int | None:
    """With ``--data-parallel-size N`` outside a rank launch: relaunch as N ranks and return the exit code."""
    from ..errors import UsageError

    for name in ("data_parallel_size", "tensor_parallel_size", "max_num_seqs"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise UsageError("--chunk-size must be at least 1")
    if args.engine == "hf" and args.tensor_parallel_size != 1:
        raise UsageError("--tensor-parallel-size applies to --engine vllm")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if args.data_parallel_size > 1:
        if world == 1:
            return relaunch_data_parallel(args.data_parallel_size, sys.argv[1:])
        if world != args.data_parallel_size:
            raise UsageError(f"--data-parallel-size {args.data_parallel_size} under a launcher with {world} ranks")
    return None


def run(args: argparse.Namespace) -> int:
    code = check_parallel(args)
    if code is not None:
        return code
    import torch

    from ..generation import GenerationConfig
    from ..inference import check_engine, infer_manifest, print_summary

    check_engine(args.engine)  # before anything loads: a one-line error without vLLM
    torch.manual_seed(args.seed)
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    extra = {} if args.engine == "hf" else {"engine": "vllm", "engine_options": engine_options(args)}
    summary = infer_manifest(args.model, args.input, args.output, device=args.device, dtype=args.dtype,
                             batch_size=args.batch_size, gen=gen, num_workers=args.num_workers,
                             template=args.template, **extra)
    print_summary(summary, Path(args.output))
    return 1 if summary.all_failed else 0
