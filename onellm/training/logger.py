"""Per-step metrics to the console, ``metrics.jsonl``, TensorBoard and (when installed and asked) wandb."""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import torch


def peak_memory_gb(device: torch.device | None = None) -> float:
    """Peak allocated GPU memory on ``device`` (default: CUDA when there is one), else the process's peak RSS."""
    if (device.type == "cuda") if device is not None else torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


class MetricLogger:
    def __init__(self, out_dir: Path, recipe, is_main: bool, total_steps: int):
        self.is_main, self.every, self.total = is_main, recipe.log_every, total_steps
        self.tb = self.wandb = None
        self.file = None
        if not is_main:
            return
        self.file = (out_dir / "metrics.jsonl").open("a")
        if "tensorboard" in recipe.report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                print("tensorboard not installed: not logging to TensorBoard", file=sys.stderr)
        if "wandb" in recipe.report_to:
            try:
                import wandb

                self.wandb = wandb.init(project="onellm", dir=str(out_dir), config={"recipe": recipe.source})
            except ImportError:
                print("wandb not installed: not logging to wandb", file=sys.stderr)

    def log_step(self, step: int, loss: float, per_key: dict[str, float], lr: float, grad_norm, samples: int,
                 tokens: int, seconds: float) -> None:
        if not self.is_main:
            return
        gn = float(grad_norm) if grad_norm is not None else None
        row: dict[str, Any] = {"step": step, "loss": round(loss, 6), "lr": lr, "grad_norm": gn,
                               "samples_per_s": samples / max(seconds, 1e-9), "tokens_per_s": tokens / max(seconds, 1e-9),
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
        if step % self.every == 0 or step == 1 or step == self.total:
            keys = " ".join(f"{k}={v:.3f}" for k, v in per_key.items())
            gn_txt = f" grad_norm {gn:.3f}" if gn is not None else ""
            print(f"step {step}/{self.total} loss {loss:.4f} [{keys}] lr {lr:.2e}{gn_txt} "
                  f"{row['samples_per_s']:.1f} samples/s {row['tokens_per_s']:.0f} tok/s "
                  f"peak {row['peak_memory_gb']:.2f} GB", flush=True)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
