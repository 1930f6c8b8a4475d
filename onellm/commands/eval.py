"""``onellm eval``: run benchmarks (eval/benchmarks/*.py) on a model; see docs/evaluation.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model directory")
    p.add_argument("--benchmark", help="NAME[,NAME...] or all (the list in eval/all.yaml)")
    p.add_argument("--data", help="one benchmark: its dataset folder; several / all: a folder with one sub-folder "
                                  "per benchmark, named as its data_dir (see --list and docs/evaluation.md)")
    p.add_argument("--split", default=None,
                   help="the benchmark's split (default: its first, see --list); a server-scored split (VQAv2 "
                        "test-dev / test-std, NoCaps test, MM-Vet) writes the file to upload instead of scores")
    p.add_argument("--output", help="results folder (default: <run>/eval for a training run's <run>/model, else "
                                    "runs/eval/<model folder>-<path hash>); predictions are resumed from "
                                    "OUTPUT/<benchmark>/predictions.jsonl")
    p.add_argument("--limit", type=int, help="only the first K requests of each benchmark (quick checks)")
    p.add_argument("--batch-size", type=int, default=8, help="requests generated together (default 8)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers loading inputs")
    p.add_argument("--template", choices=["chat", "none"], default=None,
                   help="default: the benchmark's (chat); none: alignment-only models, caption requests only, "
                        "empty prompt")
    p.add_argument("--max-new-tokens", type=int, default=None, help="default: the benchmark's (128)")
    p.add_argument("--temperature", type=float, default=None, help="default: the benchmark's (0.1); 0 = greedy")
    p.add_argument("--top-p", type=float, default=None, help="default: the benchmark's (0.75)")
    p.add_argument("--device", default="auto", help="auto (this rank's GPU, else CPU), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (reset before each benchmark)")
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf",
                   help="hf: the HF model's generate; vllm: vLLM 0.32 in its own environment (docs/vllm.md), "
                        "same predictions files")
    p.add_argument("--benchmarks-dir", default=None, help="folder of benchmark definitions (default: eval/benchmarks "
                                                          "of the source tree, or $ONELLM_BENCHMARKS)")
    p.add_argument("--list", action="store_true", help="list the available benchmarks and exit")
    p.add_argument("--paper-table", action="store_true",
                   help="print results.md before any run (the paper's numbers and splits of --benchmark, default "
                        "all) and exit; docs/results/paper-vs-ours.md is this output")


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import CheckpointError
    from ..evaluation.engine import (EvalError, benchmarks_dir, default_output, load_benchmarks, run_benchmarks,
                                     select)
    from ..evaluation.report import list_benchmarks, paper_table, submission_messages

    try:
        if args.list:
            print(list_benchmarks(load_benchmarks(benchmarks_dir(args.benchmarks_dir))), end="")
            return 0
        if args.paper_table:
            directory = benchmarks_dir(args.benchmarks_dir)
            available = load_benchmarks(directory)
            chosen, _ = select(args.benchmark or "all", directory, available)
            print(paper_table(available, [name for name, _ in chosen]), end="")
            return 0
        missing = [f"--{n}" for n in ("model", "benchmark", "data") if not getattr(args, n)]
        if missing:
            raise EvalError(f"{', '.join(missing)} required (or --list)")
        output = Path(args.output) if args.output else default_output(args.model)
        rows = run_benchmarks(args.model, args.benchmark, args.data, output, definitions=args.benchmarks_dir,
                              device=args.device, dtype=args.dtype, limit=args.limit, batch_size=args.batch_size,
                              num_workers=args.num_workers, template=args.template,
                              max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                              seed=args.seed, split=args.split, engine=args.engine)
    except (EvalError, CheckpointError, ValueError) as exc:
        print(f"onellm eval: error: {exc}", file=sys.stderr)
        return 2
    if rows:
        print((output / "results.md").read_text(encoding="utf-8"), end="")
        for line in submission_messages(rows):
            print(line)
        print(f"results: {output / 'results.md'}, {output / 'results.json'}; per benchmark: {output}/<name>/")
    failed = [r["benchmark"] for r in rows if r["status"] != "skipped" and r["n"] == 0 and r["n_errors"]]
    return 1 if failed else 0
