"""``onellm bench``: the command line of ``onellm.bench`` (kept apart so that ``--help`` does not import torch)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .common import PRESETS

# measured: `onellm bench --preset tiny --quick` took 80 s (35 s user CPU) on 2 shared cores, the issue saw 68-101 s
QUICK_HELP = ("a smoke run of every section with fewer repeats and smaller inputs: 1-2 minutes at --preset tiny on 2 "
              "CPU cores (longer on a busy machine); its numbers are rough")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="small", choices=PRESETS,
                   help="model dimensions (random weights); onellm-7b needs a GPU")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one, else the CPU), cpu, cuda ...")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="weights and autocast dtype of the run (and of the matmul peak MFU divides by)")
    p.add_argument("--out", default=None,
                   help="JSON results (default: runs/bench/<preset>-<device>-<dtype>[-quick].json)")
    p.add_argument("--quick", action="store_true", help=QUICK_HELP)
    p.add_argument("--engines-requests", type=int, default=None, metavar="N",
                   help="inference engines section: hf vs vllm samples/s on N requests + 1 text-only, 32 new tokens "
                        "(8 with --quick); default 128, and not run with --quick; 0 skips it")
    p.add_argument("--vllm-python", default=None, metavar="PYTHON",
                   help="the vLLM environment's python for that section (default: $ONELLM_VLLM_PYTHON, this one "
                        "when it has vLLM, else .venv-vllm/bin/python)")


def default_output(preset: str, device: str, dtype: str, quick: bool) -> Path:
    """Under the git-ignored ``runs/`` of the working directory, one file per configuration."""
    return Path("runs") / "bench" / f"{preset}-{device.replace(':', '')}-{dtype}{'-quick' if quick else ''}.json"


def run(args: argparse.Namespace) -> int:
    from ..bench import format_bench, run_bench
    from ..inference import resolve_device
    from ..io import atomic_write_json

    device = resolve_device(args.device)
    name = device.type if device.index is None or device.type == "cpu" else f"{device.type}:{device.index}"
    out = Path(args.out) if args.out else default_output(args.preset, name, args.dtype, args.quick)
    res = run_bench(args.preset, name, args.dtype, args.quick, log=lambda s: print(s, flush=True),
                    engines_requests=args.engines_requests, vllm_python=args.vllm_python)
    atomic_write_json(out, res)
    print(format_bench(res))
    print(f"wrote {out}")
    return 0
