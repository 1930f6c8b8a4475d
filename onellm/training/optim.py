"""AdamW over the trainable parameters only, and the learning-rate schedule (spec §4.3).

Weight decay is not applied to biases and to the weights of norm layers (RMSNorm, LayerNorm); modality tokens,
tags and positional embeddings are decayed, as in the original. The schedule is a linear warmup from 0 to ``lr`` over
``warmup_steps`` optimizer steps, then a half-cosine down to ``min_lr`` at ``decay_steps``, then constant.
"""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from .recipe import OptimizerSpec, ScheduleSpec


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of biases and norm-layer weights."""
    out = set()
    for mod_name, module in model.named_modules():
        is_norm = "Norm" in type(module).__name__
        for p_name, _ in module.named_parameters(recurse=False):
            if is_norm or p_name == "bias":
                out.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    skip = no_decay_names(model)
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue  # frozen parts never enter the optimizer (no states allocated for them)
        (plain if name in skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, spec: OptimizerSpec, device_type: str = "cpu") -> torch.optim.Optimizer:
    groups = param_groups(model, spec.weight_decay)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen (check the recipe's 'trainable')")
    kwargs = dict(lr=spec.lr, betas=tuple(spec.betas), eps=spec.eps)
    # fused AdamW when this torch offers it on this device (detected, never required); elsewhere the multi-tensor
    # (foreach) update, which torch picks by itself only on CUDA: on CPU the per-parameter Python loop of the default
    # was 6-7 % of a tiny model's step; the foreach update gives the same bits (tests/test_training.py)
    if device_type == "cuda" and "fused" in inspect.signature(torch.optim.AdamW).parameters:
        kwargs["fused"] = True
    elif "foreach" in inspect.signature(torch.optim.AdamW).parameters:
        kwargs["foreach"] = True
    return torch.optim.AdamW(groups, **kwargs)


def lr_at(step: int, lr: float, min_lr: float, schedule: ScheduleSpec, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based)."""
    warmup = schedule.warmup_steps
    if schedule.warmup_ratio is not None:
        warmup = int(round(schedule.warmup_ratio * total_steps))
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if schedule.kind == "constant":
        return lr
    decay = schedule.decay_steps or total_steps
    if step >= decay:
        return min_lr
    progress = (step - warmup) / max(1, decay - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
