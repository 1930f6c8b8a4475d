"""``onellm train RECIPE --dry-run``: the recipe's files checked, trainable parameters per part and a peak-memory
estimate, allocating nothing.

:func:`check_paths` makes sure that what a run reads first exists (the starting model directory, every manifest, the
DeepSpeed config, the feature cache): a long queue wait must not end in a missing file.

The model is built on the meta device with the recipe's trainable parts (LoRA adapters included). Per device:

* weights: frozen parameters in the compute dtype (bf16/fp16 on a GPU, fp32 on a CPU), trainable ones in fp32;
* gradients: fp32, one per trainable parameter;
* optimizer: AdamW keeps two fp32 moments per trainable parameter;
  (DeepSpeed ZeRO divides optimizer states by the world size from stage 1, gradients from stage 2, and all
  weights from stage 3);
* activations: the LLM's per-layer activations for ``micro_batch`` sequences of ``max_seq_len`` tokens,
  ``s*b*h*(34 + 5*a*s/h)`` bytes per layer at 16 bit (Korthikanti et al., 2022), or two hidden states per layer
  plus one layer's full activations with gradient checkpointing; plus the logits of the supervised tokens.

It is an estimate (allocator fragmentation, CUDA context and the data loader are not counted).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .recipe import Recipe


@dataclass
class MemoryEstimate:
    parts: dict[str, tuple[int, int]]  # part -> (trainable, total)
    weights: float
    gradients: float
    optimizer: float
    activations: float
    world_size: int
    zero_stage: int
    device: str

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def check_paths(recipe: Recipe) -> None:
    """Raise ``FileNotFoundError`` naming every file the recipe needs that is missing (with the recipe key that
    names it), or ``CheckpointError`` when the starting model directory is not a model directory."""
    from ..adapters import base_of, is_adapter_dir
    from ..checkpoint import CONFIG_FILE, read_config

    model = Path(recipe.model)
    missing: list[tuple[Path, str]] = []  # (path, what it is and the recipe key naming it)
    if not model.is_dir():
        missing.append((model, "starting model directory not found (model:; make one with `onellm init` or give a "
                               "previous stage's output_dir/model)"))
    for k, ds in enumerate(recipe.datasets):
        manifest = getattr(ds, "manifest", None)  # None: a tar-shard entry (its own reader checks its shards)
        if manifest is not None and not Path(manifest).is_file():
            missing.append((Path(manifest), f"manifest not found (datasets.{k}.manifest)"))
    if recipe.deepspeed and not Path(recipe.deepspeed).is_file():
        missing.append((Path(recipe.deepspeed), "DeepSpeed config not found (deepspeed:)"))
    if recipe.feature_cache and not (Path(recipe.feature_cache) / "index.json").is_file():
        missing.append((Path(recipe.feature_cache), "feature cache not found (feature_cache:; no index.json; make "
                                                    "it with `onellm cache-features`)"))
    if missing:
        relative = any(not path.is_absolute() for path, _ in missing)
        where = f" (relative paths are relative to the working directory {os.getcwd()})" if relative else ""
        raise FileNotFoundError("; ".join(f"{path}: {what}" for path, what in missing) + where)
    base = base_of(model) if is_adapter_dir(model) else model
    if not (base / CONFIG_FILE).is_file():
        if base != model:
            raise FileNotFoundError(f"{base}: the base model of the adapter {model} is not a model directory "
                                    f"(no {CONFIG_FILE})")
        read_config(model)  # raises the checkpoint module's message (did you mean DIR/model? ...)


def build_meta_model(recipe: Recipe):
    """The recipe's model on the meta device, trainable parts set as training would set them."""
    from ..checkpoint import read_config
    from ..model import OneLLM
    from .lora import base_of, is_adapter_dir
    from .trainer import configure_trainable

    directory = Path(recipe.model)
    config = read_config(base_of(directory) if is_adapter_dir(directory) else directory)
    if recipe.trainable.llm == "lora":
        import peft  # noqa: F401  (imported outside the meta context: module-level tensors must be real)
    with torch.device("meta"):
        model = OneLLM(config)
        configure_trainable(model, recipe)
    return model


def estimate(recipe: Recipe, device: str | None = None, world_size: int | None = None) -> MemoryEstimate:
    from .deepspeed import filled_config, zero_stage
    from .trainer import config_checkpointing

    model = build_meta_model(recipe)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    world = world_size or int(os.environ.get("WORLD_SIZE", 1))
    stage = zero_stage(filled_config(recipe)) if recipe.deepspeed else 0
    half = 2 if device == "cuda" and recipe.precision != "fp32" else 4
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    weights = frozen * half + trainable * 4
    if recipe.trainable.llm == "lora" and recipe.lora.load_in_4bit and device == "cuda":
        llm_frozen = sum(p.numel() for n, p in model.named_parameters()
                         if n.startswith("llm.") and not p.requires_grad and p.ndim == 2 and "embed" not in n
                         and "lm_head" not in n)
        weights -= llm_frozen * (half - 0.5)  # NF4: half a byte per weight (+ small per-block scales)
    grads, optim = trainable * 4.0, trainable * 8.0
    if stage >= 1:
        optim /= world
    if stage >= 2:
        grads /= world
    if stage >= 3:
        weights /= world
    cfg = model.config.llm
    s, b, h, a, L = model.config.max_seq_len, recipe.micro_batch, cfg.hidden_size, cfg.num_heads, cfg.num_layers
    per_layer = s * b * h * (34 + 5 * a * s / h)  # bytes at 16 bit
    scale = half / 2
    if recipe.gradient_checkpointing or config_checkpointing(model.config):
        acts = (2 * s * b * h * 2 * L + per_layer) * scale
    else:
        acts = per_layer * L * scale
    acts += s * b * cfg.vocab_size * 4  # fp32 logits of (at most) every position
    return MemoryEstimate(model.parameter_summary(), weights, grads, optim, acts, world, stage, device)


def print_estimate(recipe: Recipe, device: str | None = None, world_size: int | None = None) -> MemoryEstimate:
    est = estimate(recipe, device, world_size)
    gb = 2**30
    print(f"recipe {recipe.source}: model {recipe.model}")
    print(f"{'part':12s} {'trainable':>15s} {'total':>15s}")
    for part, (t, n) in est.parts.items():
        print(f"{part:12s} {t:>15,d} {n:>15,d}")
    t_all = sum(t for t, _ in est.parts.values())
    n_all = sum(n for _, n in est.parts.values())
    print(f"{'all':12s} {t_all:>15,d} {n_all:>15,d}")
    print(f"peak memory estimate per {est.device} device (world size {est.world_size}, ZeRO stage {est.zero_stage}, "
          f"micro-batch {recipe.micro_batch}, gradient checkpointing {recipe.gradient_checkpointing}):")
    for name in ("weights", "gradients", "optimizer", "activations"):
        print(f"  {name:12s} {getattr(est, name) / gb:8.2f} GiB")
    print(f"  {'total':12s} {est.total / gb:8.2f} GiB")
    print(json.dumps({"trainable": t_all, "total": n_all, "estimate_gib": round(est.total / gb, 2)}))
    return est
