"""DeepSpeed through accelerate: fill a ZeRO config's "auto" values from the recipe, and ZeRO-3 bookkeeping."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .recipe import Recipe


def filled_config(recipe: Recipe, world_size: int | None = None) -> dict[str, Any]:
    """The recipe's DeepSpeed JSON with every "auto" replaced by the recipe's value."""
    path = Path(recipe.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: DeepSpeed config not found")
    cfg = json.loads(path.read_text())
    on_gpu = torch.cuda.is_available()
    bf16 = recipe.precision == "bf16" and on_gpu
    fp16 = recipe.precision == "fp16" and on_gpu

    def fill(key: str, value: Any, section: dict | None = None) -> None:
        target = cfg if section is None else section
        if target.get(key, "auto") == "auto":
            target[key] = value

    fill("train_micro_batch_size_per_gpu", recipe.micro_batch)
    fill("gradient_accumulation_steps", recipe.accumulation)
    if world_size is not None:
        fill("train_batch_size", recipe.micro_batch * recipe.accumulation * world_size)
    elif cfg.get("train_batch_size") == "auto":
        del cfg["train_batch_size"]  # derived by DeepSpeed from the two above and the world size
    fill("gradient_clipping", recipe.grad_clip)
    for name, on in (("bf16", bf16), ("fp16", fp16)):
        section = cfg.setdefault(name, {})
        fill("enabled", on, section)
    # CPU runs (tests): DeepSpeed must use our torch AdamW, not its own compiled CPU Adam
    cfg.setdefault("zero_force_ds_cpu_optimizer", False)
    cfg.pop("optimizer", None)  # the optimizer is ours (trainable parameters, no-decay groups)
    cfg.pop("scheduler", None)  # the schedule is ours (set per step)
    return cfg


def zero_stage(cfg: dict[str, Any]) -> int:
    return int(cfg.get("zero_optimization", {}).get("stage", 0))


def deepspeed_plugin(recipe: Recipe):
    from accelerate.utils import DeepSpeedPlugin

    cfg = filled_config(recipe)
    plugin = DeepSpeedPlugin(hf_ds_config=cfg)
    if zero_stage(cfg) == 3:
        plugin.zero3_save_16bit_model = True  # the final model directory needs the gathered weights
    return plugin


def register_external_parameters(model, accelerator) -> None:
    """ZeRO-3 gathers a module's own parameters when its forward runs. OneLLM reads some parameters outside
    their owner's forward (ParameterDicts of modality tokens, tags and positional embeddings; CLIP's class and
    positional embeddings): declare them as used by the top-level forward."""
    plugin = accelerator.state.deepspeed_plugin
    if plugin is None or plugin.zero_stage != 3:
        return
    from deepspeed.runtime.zero import register_external_parameter

    owners = [model.upm.resample_tokens, model.upm.start_tag, model.upm.end_tag,
              model.tokenizers.positional_embedding]
    for owner in owners:
        for p in owner.parameters():
            register_external_parameter(model, p)
    for p in model.encoder.parameters(recurse=False):
        register_external_parameter(model, p)
