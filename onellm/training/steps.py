"""Plan one optimizer step: which of its micro-batches run, which are skipped, with what loss weight.

A micro-batch has nothing to learn when every sample failed to load, or when no trainable parameter lies on its
path (a text-only batch while the LLM is frozen: its loss has no gradient). Such micro-batches are skipped and
counted; a step whose micro-batches are all skipped takes no optimizer step at all (AdamW's momentum and weight
decay would still move the weights on a zero gradient).

Ranks must agree (DDP and ZeRO reduce gradients collectively, ZeRO-3 gathers parameters in the forward), so the
plan is made from every rank's view at once, one small all-reduce per step:

* nobody has anything to learn in micro-batch i -> every rank skips it;
* some ranks do -> the others run their last good batch of the same modality key at weight 0 (same modules,
  zero gradient); if one of them has none (e.g. right after a start or a resume), every rank skips it.

The remaining micro-batches are averaged (weight ``accumulation / executed``), and the last one that runs is
the gradient-synchronisation boundary.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch


@dataclass
class MicroBatch:
    batch: dict[str, Any]  # what this rank runs: its own batch, or a fallback at weight 0
    weight: float  # loss multiplier: accumulation / executed for real batches, 0 for a fallback
    key: str  # modality key ("image", "video+audio", "text")
    real: bool  # this rank's own data (counted in the loss, tokens and samples)
    last: bool  # the boundary: gradients synchronise and the optimizer steps after it


@dataclass
class StepPlan:
    runs: list[MicroBatch] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (micro-batch index, why), the same on every rank


def has_trainable_path(model, key: str) -> bool:
    """True when some parameter that trains lies on the path of ``key``'s inputs to the loss."""
    if any(p.requires_grad for p in model.llm.parameters()):
        return True
    if key == "text":
        return False
    if any(p.requires_grad for p in model.upm.resample_layers.parameters()):
        return True
    for m in key.split("+"):
        if any(p.requires_grad for p in model.upm.modality_parameters(m)) or not model._path_is_frozen(m):
            return True
    return False


class StepPlanner:
    def __init__(self, model, accelerator, accumulation: int, record_keys: Callable[[], dict[str, str]]):
        self.model, self.acc, self.accumulation = model, accelerator, accumulation
        self._record_keys = record_keys  # id -> modality key, built only when a batch failed entirely
        self._keys: dict[str, str] | None = None
        self._learnable: dict[str, bool] = {}
        self.last_good: dict[str, dict[str, Any]] = {}

    def key_of(self, batch: dict[str, Any]) -> str | None:
        if batch["ids"]:
            return batch["modality_keys"][0]
        if not batch.get("failed"):
            return None
        if self._keys is None:
            self._keys = self._record_keys()
        return self._keys.get(batch["failed"][0][0])

    def learnable(self, key: str | None) -> bool:
        if key is None:
            return False
        if key not in self._learnable:
            self._learnable[key] = has_trainable_path(self.model, key)
        return self._learnable[key]

    def plan(self, micro: list[dict[str, Any]]) -> StepPlan:
        keys = [self.key_of(b) for b in micro]
        has = [bool(b["ids"]) and self.learnable(k) for b, k in zip(micro, keys)]
        fallback = [None if h or not self.learnable(k) else self.last_good.get(k) for h, k in zip(has, keys)]
        can = [h or f is not None for h, f in zip(has, fallback)]
        flags = torch.tensor([[int(h), int(c), -int(h)] for h, c in zip(has, can)], dtype=torch.int64)
        if self.acc.num_processes > 1:
            flags = flags.to(self.acc.device)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
            flags = flags.cpu()
        everyone_can, anyone_has = flags[:, 1].tolist(), (-flags[:, 2]).tolist()
        plan = StepPlan()
        executed = []
        for i, (b, k) in enumerate(zip(micro, keys)):
            if not anyone_has[i]:
                why = (f"all {len(b.get('failed', []))} samples failed to load" if not b["ids"]
                       else f"nothing trains on {k!r} inputs (e.g. text-only while the LLM is frozen)")
                plan.skipped.append((i, why))
            elif not everyone_can[i]:
                plan.skipped.append((i, "a rank had no loadable batch of this modality to run alongside"))
            else:
                executed.append(i)
        weight = self.accumulation / len(executed) if executed else 0.0
        for n, i in enumerate(executed):
            last = n == len(executed) - 1
            if has[i]:
                self.last_good[keys[i]] = micro[i]
                plan.runs.append(MicroBatch(micro[i], weight, keys[i], True, last))
            else:
                plan.runs.append(MicroBatch(fallback[i], 0.0, keys[i], False, last))
        return plan
