"""Training checkpoints: what trains, the optimizer, RNG and data position; atomic, last K kept, auto-resume.

Layout of ``<output_dir>/checkpoints/step-000500/``::

    state.json              step, epoch, data position, skipped samples, wall time
    trainable.safetensors   every trainable parameter (plain runs; DeepSpeed keeps them in ds/)
    optimizer.pt            optimizer state (plain runs)
    ds/                     DeepSpeed checkpoint of the trainable parameters and the sharded optimizer states
    rng-rank<k>.pt          each rank's torch / CUDA / numpy / python RNG states

A checkpoint is written to ``step-XXXXXX.tmp`` and renamed once every rank has finished, so a kill never leaves
a half-written checkpoint that ``resume=auto`` could pick; the oldest complete ones beyond ``keep_last`` go.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STEP_PREFIX = "step-"


def complete_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir()
             if p.is_dir() and p.name.startswith(STEP_PREFIX) and not p.name.endswith(".tmp")
             and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX):]))


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    def __init__(self, directory: str | Path, accelerator, keep_last: int = 2):
        self.dir = Path(directory)
        self.acc = accelerator
        self.keep_last = keep_last

    @property
    def uses_deepspeed(self) -> bool:
        return getattr(self.acc.state, "deepspeed_plugin", None) is not None

    def save(self, model, optimizer, state: dict[str, Any]) -> Path:
        """Every rank calls this; returns the final checkpoint path."""
        acc = self.acc
        final = self.dir / f"{STEP_PREFIX}{state['step']:06d}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        if self.uses_deepspeed:
            model.save_checkpoint(str(tmp / "ds"), tag="ds", exclude_frozen_parameters=True)
        elif acc.is_main_process:
            from safetensors.torch import save_file

            unwrapped = acc.unwrap_model(model)
            trainable = {n: p.detach().cpu().contiguous() for n, p in unwrapped.named_parameters() if p.requires_grad}
            save_file(trainable, str(tmp / "trainable.safetensors"))
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / f"rng-rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / "state.json").write_text(json.dumps(state, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in complete_checkpoints(self.dir)[: -self.keep_last or None]:
                shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def find(self, resume: str) -> Path | None:
        if resume == "never":
            return None
        if resume == "auto":
            found = complete_checkpoints(self.dir)
            return found[-1] if found else None
        path = Path(resume)
        if not (path / "state.json").exists():
            raise FileNotFoundError(f"{path}: not a complete training checkpoint (no state.json)")
        return path

    def load(self, path: Path, model, optimizer) -> dict[str, Any]:
        """Restore weights, optimizer and this rank's RNG; returns the saved training state."""
        acc = self.acc
        if self.uses_deepspeed:
            if not (path / "ds").exists():
                raise FileNotFoundError(f"{path}: no DeepSpeed state (was it saved without DeepSpeed?)")
            model.load_checkpoint(str(path / "ds"), tag="ds", load_module_strict=False,
                                  load_optimizer_states=True, load_lr_scheduler_states=False)
        else:
            from safetensors.torch import load_file

            unwrapped = acc.unwrap_model(model)
            weights = load_file(str(path / "trainable.safetensors"))
            trainable = {n for n, p in unwrapped.named_parameters() if p.requires_grad}
            if set(weights) != trainable:
                raise RuntimeError(f"{path}: the checkpoint trains other parameters than this recipe "
                                   f"(only in checkpoint: {sorted(set(weights) - trainable)[:5]}, "
                                   f"only in recipe: {sorted(trainable - set(weights))[:5]})")
            unwrapped.load_state_dict(weights, strict=False)
            optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False))
        rng_file = path / f"rng-rank{acc.process_index}.pt"
        if rng_file.exists():
            set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=False))
        return json.loads((path / "state.json").read_text())
