"""``onellm plot RUN_DIR [RUN_DIR ...]``: training curves from ``metrics.jsonl`` as one PNG (runs overlaid).

Panels: loss, loss per modality, learning rate, grad norm, samples/s, tokens/s, against the optimizer step. Works on
a run that is still training (the rows written so far) and on a killed one (a torn last line is skipped).
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR",
                   help="training output_dir(s) (or their metrics.jsonl); several are drawn in the same panels")
    p.add_argument("--out", default=None,
                   help="PNG to write (default: RUN_DIR/curves.png for one run, runs/plots/<run>_vs_<run>.png for "
                        "several)")
    p.add_argument("--smooth", type=float, default=0.0,
                   help="exponential moving average weight in [0, 1) as in TensorBoard, for every curve but the "
                        "learning rate (0: the raw values)")


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..plot import plot_runs, summary_lines

    if not 0 <= args.smooth < 1:
        raise UsageError(f"--smooth must be in [0, 1), got {args.smooth}")
    try:
        path, _, data = plot_runs(args.runs, args.out, args.smooth)
    except ValueError as exc:  # a metrics file with no rows yet
        raise UsageError(str(exc)) from None
    for line in summary_lines(data):
        print(line)
    print(f"wrote {path}")
    return 0
