"""Per-step metrics to the console, ``metrics.jsonl``, TensorBoard and (when installed and asked) wandb.

``metrics.jsonl`` holds exactly one row per optimizer step of the run: a resumed run first cuts it back to the
rows of the steps up to the checkpoint it resumes from (the later ones are trained again), and the trainer fsyncs
it with every checkpoint, so a power loss cannot leave a checkpoint whose steps have no rows. Each row: ``step``,
``loss``, ``loss/<modality key>``, ``lr``, ``grad_norm``, ``samples_per_s``, ``tokens_per_s``, ``step_s`` (wall
seconds of the step), ``elapsed_s`` (since this process started training), ``peak_memory_gb``; ``onellm plot RUN_DIR``
draws them.

On a terminal a progress bar (tqdm: steps, elapsed, ETA, loss, samples/s, tokens/s) runs at the bottom; every
``log_every`` steps (and the first and last) a line with the same numbers is printed above it, and that line is all
there is in a log file (no bar fragments in non-interactive output).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch


def peak_memory_gb(device: torch.device | None = None) -> float:
    """Peak allocated GPU memory on ``device`` (default: CUDA when there is one), else the process's peak RSS."""
    if (device.type == "cuda") if device is not None else torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep the rows of steps 1..``last_step`` (the first of each, in order) and nothing else; returns how many
    rows were dropped."""
    from ..io import atomic_write_text

    if not path.exists():
        return 0
    kept: dict[int, str] = {}
    total = 0
    for raw in path.read_bytes().splitlines():
        total += 1
        try:
            row = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # a torn row of a killed run
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, int) and 1 <= step <= last_step and step not in kept:
            kept[step] = json.dumps(row)
    if len(kept) != total:
        atomic_write_text(path, "".join(kept[s] + "\n" for s in sorted(kept)))
    return total - len(kept)


def format_duration(seconds: float) -> str:
    """``1:02:03`` / ``2:03``: hours only when there are some."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class MetricLogger:
    def __init__(self, out_dir: Path, recipe, is_main: bool, total_steps: int, resume_step: int = 0,
                 progress: bool | None = None):
        """``progress``: the bar; None shows it only when stderr is a terminal (tqdm's ``disable=None``)."""
        self.is_main, self.every, self.total = is_main, recipe.log_every, total_steps
        self.tb = self.wandb = self.bar = None
        self.file = None
        self.start, self.first_step = time.perf_counter(), resume_step  # this process's clock and first step
        if not is_main:
            return
        path = out_dir / "metrics.jsonl"
        truncate_metrics(path, resume_step)  # rows after the checkpoint are trained (and logged) again
        self.file = path.open("a", encoding="utf-8")
        if "tensorboard" in recipe.report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # purge_step: TensorBoard drops the events after the checkpoint, as metrics.jsonl does
                self.tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:
                print("tensorboard not installed: not logging to TensorBoard", file=sys.stderr)
        if "wandb" in recipe.report_to:
            try:
                import wandb

                self.wandb = wandb.init(project="onellm", dir=str(out_dir), config={"recipe": recipe.source})
            except ImportError:
                print("wandb not installed: not logging to wandb", file=sys.stderr)
        if progress is not False:
            from tqdm import tqdm

            # leave=False: when training ends the bar goes; the log lines above it stay
            self.bar = tqdm(total=total_steps, initial=resume_step, disable=None if progress is None else False,
                            unit="step", dynamic_ncols=True, desc="train", leave=False, file=sys.stderr)

    def eta(self, step: int) -> float:
        """Seconds left at the mean step time of this process so far."""
        done = step - self.first_step
        return (time.perf_counter() - self.start) / done * (self.total - step) if done > 0 else float("nan")

    def log_step(self, step: int, loss: float, per_key: dict[str, float], lr: float, grad_norm, samples: int,
                 tokens: int, seconds: float) -> None:
        if not self.is_main:
            return
        gn = float(grad_norm) if grad_norm is not None else None
        elapsed = time.perf_counter() - self.start
        row: dict[str, Any] = {"step": step, "loss": round(loss, 6), "lr": lr, "grad_norm": gn,
                               "samples_per_s": samples / max(seconds, 1e-9), "tokens_per_s": tokens / max(seconds, 1e-9),
                               "step_s": round(seconds, 6), "elapsed_s": round(elapsed, 3),
                               "peak_memory_gb": round(peak_memory_gb(), 3),
                               **{f"loss/{k}": round(v, 6) for k, v in per_key.items()}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(k if "/" in k else f"train/{k}", v, step)
        if self.wandb is not None:
            self.wandb.log(row, step=step)
        if self.bar is not None and not self.bar.disable:
            self.bar.set_postfix_str(f"loss {loss:.4f} {row['samples_per_s']:.1f} samples/s "
                                     f"{row['tokens_per_s']:.0f} tok/s", refresh=False)
            self.bar.update(step - self.bar.n)
        if step % self.every == 0 or step == 1 or step == self.total:
            keys = " ".join(f"{k}={v:.3f}" for k, v in per_key.items())
            gn_txt = f" grad_norm {gn:.3f}" if gn is not None else ""
            eta = self.eta(step)
            line = (f"step {step}/{self.total} loss {loss:.4f} [{keys}] lr {lr:.2e}{gn_txt} "
                    f"{row['samples_per_s']:.1f} samples/s {row['tokens_per_s']:.0f} tok/s "
                    f"peak {row['peak_memory_gb']:.2f} GB elapsed {format_duration(elapsed)} "
                    f"eta {format_duration(eta) if eta == eta else '?'}")
            if self.bar is not None and not self.bar.disable:
                self.bar.write(line, file=sys.stdout)  # above the bar, which is redrawn below it
            else:
                print(line, flush=True)

    def wrap_log(self, log):
        """The trainer's ``log``, printing above the progress bar when there is one (a plain ``print`` would cut
        through the bar); any other ``log`` (the quickstart's, a test's) is returned as it is."""
        if log is not print or self.bar is None or self.bar.disable:
            return log
        bar = self.bar
        return lambda message: bar.write(str(message), file=sys.stdout)

    def sync(self) -> None:
        """Make every row written so far durable (called before each checkpoint is saved)."""
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
