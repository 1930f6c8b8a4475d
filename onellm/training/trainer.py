"""The training loop: accelerate (+ DeepSpeed ZeRO when the recipe names a config), any stage, any device.

Lifecycle: set up (accelerator, model, trainable parts, data, optimizer) -> resume -> train (gradient
accumulation, clipping, schedule, logging, periodic atomic checkpoints, NaN guard) -> final model directory
``<output_dir>/model`` that ``OneLLM.from_pretrained`` loads.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.collate import move_batch
from ..model import OneLLM
from ..modality import ALL_MODALITIES, Modality
from .checkpoints import CheckpointManager
from .data import TrainData, build_train_data
from .deepspeed import deepspeed_plugin, register_external_parameters
from .logger import MetricLogger
from .optim import build_optimizer, lr_at, set_lr
from .recipe import Recipe, recipe_to_dict


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)  # per optimizer step (mean over its micro-batches)
    skipped: int = 0  # samples that failed to load
    seconds: float = 0.0


def _modalities(spec: bool | list[str]) -> list[Modality]:
    if spec is True:
        return list(ALL_MODALITIES)
    if not spec:
        return []
    return [Modality.parse(m) for m in spec]


def configure_trainable(model: OneLLM, recipe: Recipe) -> None:
    t = recipe.trainable
    model.set_trainable(encoder=t.encoder, tokenizers=t.tokenizers, upm=t.upm, experts=t.experts,
                        llm=t.llm == "full")
    if t.llm == "lora":
        from .lora import apply_lora

        apply_lora(model, recipe.lora)


def init_from_image(model: OneLLM, targets: list[Modality]) -> list[str]:
    """Copy the image modality's UPM parts (tokens, proj1, router, proj2, tags) to ``targets`` (spec §7.5,
    done for any stage-I checkpoint, not only the old single-expert format)."""
    upm = model.upm
    copied = []
    with torch.no_grad():
        for m in targets:
            if m is Modality.IMAGE:
                continue
            for src, dst in zip(upm.modality_parameters(Modality.IMAGE), upm.modality_parameters(m)):
                dst.copy_(src)
            copied.append(m.value)
    return copied


def _cast_frozen(model: OneLLM, dtype: torch.dtype) -> None:
    """Frozen parameters only feed activations: keep them in the compute dtype (half the memory)."""
    for p in model.parameters():
        if not p.requires_grad and p.is_floating_point():
            p.data = p.data.to(dtype)


def make_accelerator(recipe: Recipe):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    on_gpu = torch.cuda.is_available()
    plugin = deepspeed_plugin(recipe) if recipe.deepspeed else None
    mixed = recipe.precision if (on_gpu and recipe.precision != "fp32") else "no"
    launched = int(os.environ.get("WORLD_SIZE", 1)) > 1 or int(os.environ.get("LOCAL_RANK", -1)) != -1
    handlers: list[Any] = []
    if not on_gpu and launched:  # gloo for CPU process groups (nccl needs GPUs)
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    if plugin is None:
        # each step uses one modality's parts: the others get no gradient, which DDP must be told
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    kwargs: dict[str, Any] = dict(gradient_accumulation_steps=recipe.accumulation, kwargs_handlers=handlers)
    if plugin is not None:
        kwargs["deepspeed_plugin"] = plugin  # DeepSpeed owns precision (its bf16/fp16 sections)
    else:
        kwargs.update(mixed_precision=mixed, cpu=not on_gpu)
    return Accelerator(**kwargs)


def _total_steps(recipe: Recipe, data: TrainData) -> int:
    if recipe.max_steps is not None:
        return recipe.max_steps
    per_epoch = len(data.sampler.global_batches(0)) // recipe.accumulation
    return max(1, math.ceil(recipe.epochs * per_epoch))


def train(recipe: Recipe, log=print) -> TrainResult:
    from accelerate.utils import set_seed

    start_time = time.perf_counter()
    acc = make_accelerator(recipe)
    set_seed(recipe.seed)
    out_dir = Path(recipe.output_dir)
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "recipe.json").write_text(json.dumps(recipe_to_dict(recipe), indent=2))

    model = OneLLM.from_pretrained(recipe.model)
    configure_trainable(model, recipe)
    if recipe.gradient_checkpointing or model.config.gradient_checkpointing:
        model.upm.gradient_checkpointing = True
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if recipe.max_seq_len:
        model.config.max_seq_len = recipe.max_seq_len
    if acc.device.type == "cuda" and recipe.precision != "fp32" and not recipe.deepspeed:
        _cast_frozen(model, torch.bfloat16 if recipe.precision == "bf16" else torch.float16)
    tokenizer = model.tokenizer
    data = build_train_data(recipe, model.config, tokenizer, acc.process_index, acc.num_processes, log)
    total_steps = _total_steps(recipe, data)
    ckpt = CheckpointManager(out_dir / "checkpoints", acc, recipe.keep_last)
    resume_from = ckpt.find(recipe.resume)
    if recipe.init_from_image and resume_from is None:
        targets = (_modalities(recipe.trainable.upm) if recipe.init_from_image is True
                   else _modalities(recipe.init_from_image))
        copied = init_from_image(model, targets)
        log(f"init_from_image: copied the image UPM parts to {copied}")

    summary = model.parameter_summary()
    log(f"OneLLM {model.config.name}: " + ", ".join(f"{k} {t:,}/{n:,} trainable" for k, (t, n) in summary.items()))
    optimizer = build_optimizer(model, recipe.optimizer, acc.device.type)
    model, optimizer = acc.prepare(model, optimizer)
    if ckpt.uses_deepspeed:
        register_external_parameters(acc.unwrap_model(model), acc)

    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "skipped": 0, "skipped_ids": []}
    if resume_from is not None:
        state.update(ckpt.load(resume_from, model, optimizer))
        log(f"resumed from {resume_from} at step {state['step']}")
    logger = MetricLogger(out_dir, recipe, acc.is_main_process, total_steps)
    result = TrainResult(out_dir, out_dir / "model", state["step"])
    unwrapped: OneLLM = acc.unwrap_model(model)
    device = acc.device
    cast = next(p for p in unwrapped.upm.parameters()).dtype

    def batches():
        while True:
            data.set_epoch(state["epoch"])
            data.sampler.set_state(state["epoch"], state["position"])
            for batch in data.loader(recipe.num_workers):
                state["position"] += 1
                yield batch
            state["epoch"] += 1
            state["position"] = 0

    stream = batches()
    last_good: dict[str, dict] = {}
    model.train()
    while state["step"] < total_steps:
        step_loss, step_tokens, step_samples, t0 = 0.0, 0, 0, time.perf_counter()
        per_key: dict[str, list[float]] = {}
        set_lr(optimizer, lr_at(state["step"], recipe.optimizer.lr, recipe.optimizer.min_lr, recipe.schedule,
                                total_steps))
        for _ in range(recipe.accumulation):
            batch = next(stream)
            for rid, err in batch.get("failed", []):
                state["skipped"] += 1
                state["skipped_ids"] = (state["skipped_ids"] + [rid])[-100:]
                log(f"skipped sample {rid}: {err}")
            weight = 1.0
            if not batch["ids"]:  # the whole micro-batch failed: rerun the last good one at zero weight so every
                # rank still runs the same modules (ZeRO-3 gathers parameters collectively)
                if not last_good:
                    raise RuntimeError("the first micro-batch failed to load entirely; see the skipped samples")
                batch, weight = next(iter(last_good.values())), 0.0
            key = batch["modality_keys"][0]
            last_good[key] = batch
            with acc.accumulate(model):
                out = model(move_batch(batch, device, cast), return_logits=False)
                loss = out.loss
                if not torch.isfinite(loss.detach()).item():
                    raise NonFiniteLossError(f"loss is {loss.item()} at step {state['step']} (modality {key}); "
                                             f"the last good checkpoint is kept in {ckpt.dir}")
                acc.backward(loss * weight)
                grad_norm = None
                if acc.sync_gradients:
                    if recipe.grad_clip > 0 and not ckpt.uses_deepspeed:
                        grad_norm = acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                        recipe.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if ckpt.uses_deepspeed:
                        grad_norm = model.get_global_grad_norm()
            if weight:
                step_loss += loss.item() / recipe.accumulation
                per_key.setdefault(key, []).append(loss.item())
                step_tokens += int(batch["attention_mask"].sum())
                step_samples += len(batch["ids"])
        state["step"] += 1
        result.losses.append(step_loss)
        logger.log_step(state["step"], loss=step_loss, per_key={k: sum(v) / len(v) for k, v in per_key.items()},
                        lr=optimizer.param_groups[0]["lr"], grad_norm=grad_norm, samples=step_samples * acc.num_processes,
                        tokens=step_tokens * acc.num_processes, seconds=time.perf_counter() - t0)
        if state["step"] % recipe.save_every == 0 or state["step"] == total_steps:
            ckpt.save(model, optimizer, {**state, "seconds": time.perf_counter() - start_time})
    logger.close()
    checksums = rank_checksums(acc, model)
    final = _save_final(acc, model, out_dir / "model", tokenizer,
                        base=recipe.model if recipe.trainable.llm == "lora" else None)
    result.model_dir, result.steps, result.skipped = final, state["step"], state["skipped"]
    result.seconds = time.perf_counter() - start_time
    if acc.is_main_process:
        agree = all(c == checksums[0] for c in checksums)
        summary_row = {"steps": result.steps, "losses": result.losses, "skipped": result.skipped,
                       "skipped_ids": state["skipped_ids"], "seconds": result.seconds, "world_size": acc.num_processes,
                       "rank_checksums": checksums, "ranks_agree": agree}
        (out_dir / "train_summary.json").write_text(json.dumps(summary_row, indent=2))
        if not agree:
            log(f"WARNING: ranks ended with different trainable parameters: {checksums}")
    return result


def rank_checksums(acc, model) -> list[list[float]]:
    """Per rank, (sum, sum of squares) of all trainable parameters, gathered to every rank: equal when the ranks
    agree. Under ZeRO-3 the partitions are gathered first."""
    import contextlib

    params = [p for p in acc.unwrap_model(model).parameters() if p.requires_grad]
    ctx = contextlib.nullcontext()
    plugin = getattr(acc.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        import deepspeed

        ctx = deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    with ctx, torch.no_grad():
        local = torch.tensor([sum(float(p.double().sum()) for p in params),
                              sum(float(p.double().pow(2).sum()) for p in params)], dtype=torch.float64)
    gathered = acc.gather(local.to(acc.device)).reshape(acc.num_processes, 2)
    return [[round(v, 6) for v in row.tolist()] for row in gathered.cpu()]


def _save_final(acc, model, directory: Path, tokenizer, base: str | None = None) -> Path:
    """Gather the full weights (ZeRO-3 partitions included) and write a model directory from rank 0 (an adapter
    directory on top of ``base`` for LoRA runs)."""
    from ..checkpoint import save_model_directory
    from .lora import save_adapter

    state_dict = acc.get_state_dict(model)
    if acc.is_main_process:
        if base is not None:
            save_adapter(acc.unwrap_model(model), directory, base, state_dict, tokenizer)
        else:
            save_model_directory(acc.unwrap_model(model), directory, state_dict=state_dict, tokenizer=tokenizer)
    acc.wait_for_everyone()
    return directory
