"""Training checkpoints: what trains, the optimizer, RNG and data position; atomic, verified, last K kept, resume.

Layout of ``<output_dir>/checkpoints/step-000500/``::

    state.json                  step, epoch, data position, skipped samples, losses so far, wall time, and
                                "files": {relative path: {size, sha256, scope}} of every other file
    trainable.safetensors       every trainable parameter (plain runs; DeepSpeed keeps them in ds/)
    optimizer.safetensors       optimizer state (plain runs): tensors + a JSON skeleton, no pickle
    ds/                         DeepSpeed checkpoint of the trainable parameters and the sharded optimizer states
    rng-rank<k>.safetensors     each rank's torch / CUDA / numpy / python RNG states, no pickle

Durability: a checkpoint is written to ``step-XXXXXX.tmp``; once every rank has finished, rank 0 records sizes and
checksums in ``state.json``, fsyncs every file and directory and only then renames it, so neither a kill nor a
power loss leaves a renamed checkpoint with missing or empty files. The oldest complete ones beyond ``keep_last``
go. Only folders named exactly ``step-<digits>`` count (``.tmp``, ``step-000012.bak`` ... are ignored).

Resume (``resume: auto``) takes the newest checkpoint whose files match their recorded sizes and checksums (the
whole file up to 256 MiB, the first and last 4 MiB of bigger ones); a damaged one is skipped with a warning and
the previous one is used. Nothing is unpickled: DeepSpeed's own ``.pt`` files go through the weights-only
unpickler (``safe_state``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

from ..checkpoint import CheckpointError
from ..errors import naming
from ..io import atomic_write_json, fsync_dir, fsync_tree, save_safetensors
from .safe_state import (guard_deepspeed_loads, load_state, numpy_rng_globals, rng_state, save_state, set_rng_state,
                         weights_only_load)

STEP_PREFIX = "step-"
STEP_RE = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"
FULL_HASH_LIMIT = 256 * 2**20  # bigger files: checksum of their first and last EDGE bytes (plus the size)
EDGE = 4 * 2**20


def complete_checkpoints(directory: Path) -> list[Path]:
    """Renamed checkpoints (``step-<digits>`` with a state.json), oldest first; not yet verified."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and STEP_RE.match(p.name) and (p / STATE_FILE).exists()]
    return sorted(found, key=lambda p: int(STEP_RE.match(p.name).group(1)))


def file_digest(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    h = hashlib.sha256()
    with path.open("rb") as f:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: f.read(2**20), b""):
                h.update(chunk)
            scope = "full"
        else:
            h.update(f.read(EDGE))
            f.seek(size - EDGE)
            h.update(f.read(EDGE))
            scope = "edges"
    return {"size": size, "sha256": h.hexdigest(), "scope": scope}


def record_files(directory: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(directory)): file_digest(p) for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != STATE_FILE}


def read_state(path: Path) -> dict[str, Any]:
    try:
        state = json.loads((path / STATE_FILE).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / STATE_FILE}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{path / STATE_FILE}: not a training state (no integer 'step')")
    return state


def verify(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be resumed from (a missing, truncated or altered file), or None."""
    try:
        state = read_state(path)
    except CheckpointError as exc:
        return str(exc)
    files = state.get("files")
    if files is None:  # written before checksums were recorded: only check that its parts are there
        has_weights = (path / "trainable.safetensors").is_file() or (path / "ds").is_dir()
        return None if has_weights else f"{path}: no trainable.safetensors or ds/"
    for rel, want in files.items():
        f = path / rel
        if not f.is_file():
            return f"{f}: missing"
        size = f.stat().st_size
        if size != want.get("size"):
            return f"{f}: {size} bytes, {want.get('size')} when saved (truncated or replaced)"
        if file_digest(f)["sha256"] != want.get("sha256"):
            return f"{f}: checksum differs from the one recorded when saved (corrupt or altered)"
    return None


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
        tmp = final.with_name(final.name + ".tmp")  # one name every rank knows (not a per-process temp name)
        with naming(tmp):
            if acc.is_main_process:
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir(parents=True)
            acc.wait_for_everyone()
            if self.uses_deepspeed:
                model.save_checkpoint(str(tmp / "ds"), tag="ds", exclude_frozen_parameters=True)
            elif acc.is_main_process:
                unwrapped = acc.unwrap_model(model)
                trainable = {n: p.detach().cpu().contiguous() for n, p in unwrapped.named_parameters()
                             if p.requires_grad}
                save_safetensors(trainable, tmp / "trainable.safetensors")
                save_state(optimizer.state_dict(), tmp / "optimizer.safetensors")
            save_state(rng_state(), tmp / f"rng-rank{acc.process_index}.safetensors")
            acc.wait_for_everyone()
            if acc.is_main_process:
                atomic_write_json(tmp / STATE_FILE, {**state, "files": record_files(tmp)})
                fsync_tree(tmp)  # every file and folder durable before the rename makes the checkpoint visible
                old = final.with_name(f".{final.name}.old")
                if final.exists():  # the same step saved again (a run resumed from an earlier checkpoint)
                    shutil.rmtree(old, ignore_errors=True)
                    os.replace(final, old)
                os.replace(tmp, final)
                fsync_dir(self.dir)
                shutil.rmtree(old, ignore_errors=True)
                self._prune()
        acc.wait_for_everyone()
        return final

    def _prune(self) -> None:
        for old in complete_checkpoints(self.dir)[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.dir.glob(f"{STEP_PREFIX}*.tmp"):  # left by a kill mid-save; no save is running now
            shutil.rmtree(stale, ignore_errors=True)

    def find(self, resume: str, log: Callable[[str], None] = print) -> Path | None:
        """The checkpoint to resume from: rank 0 verifies, every rank gets its choice."""
        if resume == "never":
            return None
        choice: list[Any] = [None]
        if self.acc.is_main_process:
            try:
                found = self._choose(resume, log)
                choice[0] = ("ok", str(found) if found else None)
            except CheckpointError as exc:  # every rank must raise, not wait for a broadcast that never comes
                choice[0] = ("error", str(exc))
        if self.acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(choice)
        kind, value = choice[0]
        if kind == "error":
            raise CheckpointError(value)
        return Path(value) if value else None

    def _choose(self, resume: str, log: Callable[[str], None]) -> Path | None:
        if resume != "auto":
            path = Path(resume)
            if not (path / STATE_FILE).exists():
                raise CheckpointError(f"{path}: not a complete training checkpoint (no {STATE_FILE})")
            problem = verify(path)
            if problem:
                raise CheckpointError(f"resume={path}: {problem}")
            return path
        candidates = complete_checkpoints(self.dir)
        for k, path in enumerate(reversed(candidates)):
            problem = verify(path)
            if problem is None:
                return path
            fallback = candidates[-k - 2].name if k + 2 <= len(candidates) else "a fresh start"
            log(f"WARNING: checkpoint {path.name} is damaged ({problem}); falling back to {fallback}")
        return None

    def load(self, path: Path, model, optimizer) -> dict[str, Any]:
        """Restore weights, optimizer and this rank's RNG; returns the saved training state."""
        acc = self.acc
        if self.uses_deepspeed:
            if not (path / "ds").exists():
                raise CheckpointError(f"{path}: no DeepSpeed state (was it saved without DeepSpeed?)")
            guard_deepspeed_loads(model)
            model.load_checkpoint(str(path / "ds"), tag="ds", load_module_strict=False,
                                  load_optimizer_states=True, load_lr_scheduler_states=False)
        else:
            self._load_plain(path, acc.unwrap_model(model), optimizer)
        rng_file = path / f"rng-rank{acc.process_index}.safetensors"
        legacy_rng = path / f"rng-rank{acc.process_index}.pt"
        if rng_file.exists():
            set_rng_state(load_state(rng_file))
        elif legacy_rng.exists():
            set_rng_state(weights_only_load(legacy_rng, allow=numpy_rng_globals()))
        state = read_state(path)
        state.pop("files", None)
        return state

    @staticmethod
    def _load_plain(path: Path, unwrapped, optimizer) -> None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            weights = load_file(str(path / "trainable.safetensors"))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path / 'trainable.safetensors'}: unreadable ({exc})") from None
        trainable = {n for n, p in unwrapped.named_parameters() if p.requires_grad}
        if set(weights) != trainable:
            raise CheckpointError(f"{path}: the checkpoint trains other parameters than this recipe "
                                  f"(only in checkpoint: {sorted(set(weights) - trainable)[:5]}, "
                                  f"only in recipe: {sorted(trainable - set(weights))[:5]})")
        unwrapped.load_state_dict(weights, strict=False)
        if (path / "optimizer.safetensors").exists():
            saved = load_state(path / "optimizer.safetensors")
        else:  # checkpoints written before the safetensors format
            saved = weights_only_load(path / "optimizer.pt")
        _restore_tuples(saved, optimizer)
        optimizer.load_state_dict(saved)


def _restore_tuples(saved: dict[str, Any], optimizer) -> None:
    """JSON keeps no tuples apart from our encoding; keep each param-group value the type it has now (betas)."""
    for group, current in zip(saved.get("param_groups", []), optimizer.param_groups):
        for key, value in current.items():
            if isinstance(value, tuple) and isinstance(group.get(key), list):
                group[key] = tuple(group[key])
