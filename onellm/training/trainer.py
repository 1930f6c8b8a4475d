"""The training loop: accelerate (+ DeepSpeed ZeRO when the recipe names a config), any stage, any device.

Lifecycle: set up (accelerator, model, trainable parts, data, optimizer) -> resume (the newest verified
checkpoint) -> train (planned gradient accumulation: micro-batches with nothing to learn are skipped, clipping,
schedule, logging, periodic atomic checkpoints, NaN guard) -> final model directory ``<output_dir>/model`` that
``OneLLM.from_pretrained`` loads, and ``train_summary.json`` covering the whole run (every process of it).
Re-running a finished run (same recipe) changes nothing: it says it is complete and returns.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.collate import move_batch
from ..errors import TrainingDataError, naming
from ..data.text import load_tokenizer
from ..model import OneLLM
from ..processing import OneLLMProcessor
from .checkpoints import CheckpointManager
from .data import TrainData, build_train_data
from .deepspeed import deepspeed_plugin, register_external_parameters
from .logger import MetricLogger
from .optim import build_optimizer, lr_at, set_lr
from .recipe import Recipe, recipe_to_dict
from .steps import StepPlanner

SUMMARY_FILE = "train_summary.json"
# recipe keys that do not change what a run computes: a finished run re-launched with other values is still done
RUNTIME_KEYS = ("resume", "source", "report_to", "log_every", "num_workers", "keep_last", "save_every")


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class TrainResult:
    output_dir: Path
    model_dir: Path
    steps: int
    losses: list[float] = field(default_factory=list)  # per optimizer step of the whole run (mean of its micro-batches)
    skipped: int = 0  # samples that failed to load
    seconds: float = 0.0
    skipped_batches: int = 0  # micro-batches with nothing to learn (no optimizer step from them)
    skipped_steps: int = 0  # optimizer steps not taken because none of their micro-batches had anything to learn
    already_complete: bool = False  # the run had finished before this call: nothing was done


def _modalities(spec: bool | list[str], model: OneLLM) -> list[str]:
    from ..modalities import parse_modalities

    return parse_modalities(spec, default=model.config.modalities)


def configure_trainable(model: OneLLM, recipe: Recipe) -> None:
    t = recipe.trainable
    model.set_trainable(encoder=t.encoder, tokenizers=t.tokenizers, upm=t.upm, experts=t.experts,
                        llm=t.llm == "full")
    if t.llm == "lora":
        from .lora import apply_lora

        apply_lora(model, recipe.lora)


def init_from_image(model: OneLLM, targets: list[str], source: str = "image") -> list[str]:
    """Copy the ``source`` modality's UPM parts (tokens, proj1, router, proj2, tags) to ``targets``: stage I
    aligns images first and the other modalities start from its parts (spec §7.5, done for any stage-I
    checkpoint, not only the old single-expert format)."""
    upm = model.upm
    if source not in model.config.modalities:
        raise ValueError(f"init_from_image: the model has no {source!r} modality to copy from")
    copied = []
    with torch.no_grad():
        for m in targets:
            if m != source:
                for src, dst in zip(upm.modality_parameters(source), upm.modality_parameters(m)):
                    dst.copy_(src)
                copied.append(str(m))
    return copied


def _cast_frozen(model: OneLLM, dtype: torch.dtype) -> None:
    """Frozen parameters only feed activations: keep them in the compute dtype (half the memory)."""
    for p in model.parameters():
        if not p.requires_grad and p.is_floating_point():
            p.data = p.data.to(dtype)


def config_checkpointing(config) -> bool:
    """The model config's own activation-checkpointing switch (``activation_checkpointing``; older configs called
    it ``gradient_checkpointing``)."""
    return bool(getattr(config, "activation_checkpointing", getattr(config, "gradient_checkpointing", False)))


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
    return max(1, math.ceil(recipe.epochs * _steps_per_epoch(recipe, data)))


def _steps_per_epoch(recipe: Recipe, data: TrainData) -> int:
    return max(1, data.num_batches(0) // recipe.accumulation)


def _rescale_position(state: dict[str, Any], geometry: list[int], data: TrainData, log) -> int:
    """The resumed data position in this run's global batches. Unchanged when ranks and micro-batch are the same
    (the exact continuation). Otherwise the epoch's order is cut into other global batches: the position moves to
    the same number of samples into the epoch (the rest of the epoch then follows the new cut, so within this
    epoch some samples come twice and others not at all; from the next epoch on, every sample once again)."""
    old = state.get("data_geometry") or geometry
    position = int(state["position"])
    if list(old) == list(geometry):
        return position
    seen = position * int(old[0]) * int(old[1])
    new = min(seen // (geometry[0] * geometry[1]), data.num_batches(int(state["epoch"])))
    log(f"WARNING: the checkpoint was written with {old[0]} rank(s) x micro-batch {old[1]}, this run has "
        f"{geometry[0]} x {geometry[1]}: the data position moves to {seen} samples into epoch {state['epoch']} "
        f"(batch {new}); the rest of this epoch follows the new batch cut (some samples repeat, some are left out), "
        "later epochs see every sample once")
    state["data_geometry"] = list(geometry)
    return new


def recipe_fingerprint(recipe: Recipe) -> str:
    """What identifies a run's computation (the recipe without its runtime-only keys)."""
    data = {k: v for k, v in recipe_to_dict(recipe).items() if k not in RUNTIME_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def completed_run(out_dir: Path, fingerprint: str) -> TrainResult | None:
    """The result of a run of this recipe that already finished in ``out_dir`` (summary + model there), else None."""
    try:
        summary = json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    model_dir = out_dir / "model"
    if not (isinstance(summary, dict) and summary.get("complete") and summary.get("recipe_fingerprint") == fingerprint
            and model_dir.is_dir() and any(model_dir.iterdir())):
        return None
    return TrainResult(out_dir, model_dir, summary["steps"], summary.get("losses", []), summary.get("skipped", 0),
                       summary.get("seconds", 0.0), summary.get("skipped_batches", 0),
                       summary.get("skipped_steps", 0), already_complete=True)


@contextlib.contextmanager
def _micro_step(acc, model, is_last: bool):
    """Gradient accumulation over the micro-batches that actually run: synchronise (DDP all-reduce, DeepSpeed's
    boundary and step) on the last one only. accelerate's own ``accumulate`` counts every call, skipped or not."""
    acc.gradient_state._set_sync_gradients(is_last)  # the one private accelerate call: there is no public setter
    with contextlib.nullcontext() if is_last else acc.no_sync(model):
        yield


def train(recipe: Recipe, log=print) -> TrainResult:
    from accelerate.utils import set_seed

    from ..io import atomic_write_json

    start_time = time.perf_counter()
    acc = make_accelerator(recipe)
    set_seed(recipe.seed)
    out_dir = Path(recipe.output_dir)
    fingerprint = recipe_fingerprint(recipe)
    if recipe.resume != "never":
        done = completed_run(out_dir, fingerprint)
        if done is not None:
            log(f"{out_dir}: this run is already complete ({done.steps} steps, model in {done.model_dir}); "
                "nothing to do (resume=never trains it again)")
            return done
    if acc.is_main_process:
        with naming(out_dir, replace=True):  # the first write: a read-only or full output_dir is named as such
            atomic_write_json(out_dir / "recipe.json", recipe_to_dict(recipe))

    model = OneLLM.from_pretrained(recipe.model)
    added = model.add_modalities(recipe.add_modalities)
    configure_trainable(model, recipe)
    if recipe.gradient_checkpointing or config_checkpointing(model.config):
        model.activation_checkpointing_enable({"use_reentrant": False})
    if recipe.max_seq_len:
        model.config.max_seq_len = recipe.max_seq_len
    if acc.device.type == "cuda" and recipe.precision != "fp32" and not recipe.deepspeed:
        _cast_frozen(model, torch.bfloat16 if recipe.precision == "bf16" else torch.float16)
    processor = OneLLMProcessor.for_config(model.config, load_tokenizer(recipe.model))  # shares the config
    data = build_train_data(recipe, processor, acc.process_index, acc.num_processes, log)
    total_steps = _total_steps(recipe, data)
    ckpt = CheckpointManager(out_dir / "checkpoints", acc, recipe.keep_last)
    resume_from = ckpt.find(recipe.resume, log)
    if added and resume_from is None:
        copied = init_from_image(model, added)
        log(f"add_modalities: new parts for {added} (UPM parts initialised from the image ones: {copied})")
    if recipe.init_from_image and resume_from is None:
        targets = _modalities(recipe.trainable.upm if recipe.init_from_image is True else recipe.init_from_image,
                              model)
        copied = init_from_image(model, targets)
        log(f"init_from_image: copied the image UPM parts to {copied}")

    summary = model.parameter_summary()
    log(f"OneLLM {model.config.name}: " + ", ".join(f"{k} {t:,}/{n:,} trainable" for k, (t, n) in summary.items()))
    optimizer = build_optimizer(model, recipe.optimizer, acc.device.type)
    model, optimizer = acc.prepare(model, optimizer)
    if ckpt.uses_deepspeed:
        register_external_parameters(acc.unwrap_model(model), acc)

    geometry = [acc.num_processes, recipe.micro_batch]  # what a data position counts in (global batch size)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "position": 0, "skipped": 0, "skipped_ids": [],
                             "skipped_batches": 0, "skipped_steps": 0, "losses": [], "seconds": 0.0,
                             "data_geometry": geometry}
    if resume_from is not None:
        state.update(ckpt.load(resume_from, model, optimizer))
        log(f"resumed from {resume_from} at step {state['step']}")
        state["position"] = _rescale_position(state, geometry, data, log)
    state["losses"] = state["losses"][: state["step"]]
    earlier_seconds = float(state["seconds"])  # the processes before this one, up to the checkpoint
    logger = MetricLogger(out_dir, recipe, acc.is_main_process, total_steps, resume_step=state["step"])
    log = logger.wrap_log(log)  # messages print above the progress bar, not through it
    unwrapped: OneLLM = acc.unwrap_model(model)
    device = acc.device
    cast = next(p for p in unwrapped.upm.parameters()).dtype
    planner = StepPlanner(unwrapped, acc, recipe.accumulation, lambda: data.failed_keys)  # filled as batches come
    stall_limit = _steps_per_epoch(recipe, data) + 1

    def batches():
        while True:
            data.set_epoch(state["epoch"])
            data.sampler.set_state(state["epoch"], state["position"])
            for batch in data.loader(recipe.num_workers):
                state["position"] += 1
                data.note_failures(batch)
                yield batch
            state["epoch"] += 1
            state["position"] = 0

    def elapsed() -> float:
        return earlier_seconds + time.perf_counter() - start_time

    stream = batches()
    skipped_in_a_row = 0
    model.train()
    while state["step"] < total_steps:
        step_loss, n_real, step_tokens, step_samples, t0 = 0.0, 0, 0, 0, time.perf_counter()
        per_key: dict[str, list[float]] = {}
        set_lr(optimizer, lr_at(state["step"], recipe.optimizer.lr, recipe.optimizer.min_lr, recipe.schedule,
                                total_steps))
        micro = [next(stream) for _ in range(recipe.accumulation)]  # planned together: every rank must agree
        for batch in micro:
            for rid, err in batch.get("failed", []):
                state["skipped"] += 1
                state["skipped_ids"] = (state["skipped_ids"] + [rid])[-100:]
                log(f"skipped sample {rid}: {err}")
        plan = planner.plan(micro)
        for i, why in plan.skipped:
            state["skipped_batches"] += 1
            log(f"step {state['step'] + 1}: micro-batch {i + 1}/{recipe.accumulation} skipped: {why}")
        if not plan.runs:
            state["skipped_steps"] += 1
            skipped_in_a_row += 1
            log(f"step {state['step'] + 1}: nothing to learn in any micro-batch; no optimizer step")
            if skipped_in_a_row > stall_limit:
                raise TrainingDataError(
                    f"{skipped_in_a_row} optimizer steps in a row had nothing to learn (more than an epoch): every "
                    "sample fails to load, or nothing trains for these inputs; check the skipped samples above and "
                    "the recipe's 'trainable' and 'datasets'")
            continue
        skipped_in_a_row = 0
        grad_norm = None
        for run in plan.runs:
            with _micro_step(acc, model, run.last):
                out = model(**move_batch(run.batch["inputs"], device, cast), return_logits=False)
                loss = out.loss
                if not torch.isfinite(loss.detach()).item():
                    raise NonFiniteLossError(f"loss is {loss.item()} at step {state['step']} (modality {run.key}); "
                                             f"the last good checkpoint is kept in {ckpt.dir}")
                acc.backward(loss * run.weight)
                if run.last:
                    if recipe.grad_clip > 0 and not ckpt.uses_deepspeed:
                        grad_norm = acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                        recipe.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if ckpt.uses_deepspeed:
                        grad_norm = model.get_global_grad_norm()
            if run.real:
                step_loss += loss.item()
                n_real += 1
                per_key.setdefault(run.key, []).append(loss.item())
                step_tokens += int(run.batch["inputs"]["attention_mask"].sum())
                step_samples += len(run.batch["ids"])
        totals = torch.tensor([step_loss, n_real, step_tokens, step_samples], dtype=torch.float64)
        if acc.num_processes > 1:  # the step's loss over every rank's real micro-batches
            totals = acc.reduce(totals.to(device), reduction="sum").cpu()
        mean_loss = float(totals[0] / totals[1])
        state["step"] += 1
        state["losses"].append(mean_loss)
        logger.log_step(state["step"], loss=mean_loss, per_key={k: sum(v) / len(v) for k, v in per_key.items()},
                        lr=optimizer.param_groups[0]["lr"], grad_norm=grad_norm, samples=int(totals[3]),
                        tokens=int(totals[2]), seconds=time.perf_counter() - t0)
        if state["step"] % recipe.save_every == 0 or state["step"] == total_steps:
            logger.sync()  # the rows of these steps are durable before the checkpoint that covers them
            ckpt.save(model, optimizer, {**state, "seconds": elapsed()})
    logger.close()
    checksums = rank_checksums(acc, model)
    final = _save_final(acc, model, out_dir / "model", processor,
                        base=recipe.model if recipe.trainable.llm == "lora" else None)
    result = TrainResult(out_dir, final, state["step"], list(state["losses"]), state["skipped"], elapsed(),
                         state["skipped_batches"], state["skipped_steps"])
    if acc.is_main_process:
        agree = all(c == checksums[0] for c in checksums)
        summary_row = {"complete": True, "recipe_fingerprint": fingerprint, "steps": result.steps,
                       "total_steps": total_steps, "losses": result.losses, "skipped": result.skipped,
                       "skipped_ids": state["skipped_ids"], "skipped_batches": result.skipped_batches,
                       "skipped_steps": result.skipped_steps, "seconds": result.seconds,
                       "world_size": acc.num_processes, "rank_checksums": checksums, "ranks_agree": agree}
        atomic_write_json(out_dir / SUMMARY_FILE, summary_row)
        if not agree:
            log(f"WARNING: ranks ended with different trainable parameters: {checksums}")
    acc.wait_for_everyone()
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


def _save_final(acc, model, directory: Path, processor, base: str | None = None) -> Path:
    """Gather the full weights (ZeRO-3 partitions included) and write a model directory from rank 0 (an adapter
    directory on top of ``base`` for LoRA runs)."""
    from ..checkpoint import save_model_directory
    from .lora import save_adapter

    state_dict = acc.get_state_dict(model)
    if acc.is_main_process:
        if base is not None:
            save_adapter(acc.unwrap_model(model), directory, base, state_dict, processor)
        else:
            save_model_directory(acc.unwrap_model(model), directory, processor=processor, state_dict=state_dict)
    acc.wait_for_everyone()
    return directory
