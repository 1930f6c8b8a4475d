"""Training state that loads without running code: no pickle anywhere a resume reads.

* Nested state (an optimizer's ``state_dict()``, the RNG states) is stored as one safetensors file: its tensors,
  plus a JSON skeleton of everything else (dicts with any keys, lists, tuples, numbers, strings, numpy arrays) in
  the safetensors metadata. Loading it parses JSON and tensor bytes, nothing else.
* Files that only exist as pickles (DeepSpeed's ``*_model_states.pt`` / ``*_optim_states.pt``, checkpoints written
  before this format) are read with ``torch.load(weights_only=True)``: torch's restricted unpickler, which builds
  tensors and plain containers only, plus an explicit allow-list of DeepSpeed's own plain classes. A pickle that
  references anything else (``os.system``, ``builtins.exec``, any ``__reduce__`` payload) is refused before it runs.
"""
from __future__ import annotations

import functools
import json
import pickle
import random
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..checkpoint import CheckpointError

META_KEY = "onellm_state"


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file holds pickled objects that would run code when loaded; it was not loaded."""


# -- nested state <-> (JSON skeleton, tensors) -----------------------------------------------------------------
def encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON-able skeleton of ``obj``; its tensors (and numpy arrays) go into ``tensors`` under fresh names."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous().clone()  # own storage: safetensors refuses shared ones
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        name = f"t{len(tensors)}"
        wide = obj.astype(np.int64) if obj.dtype == np.uint32 else obj  # torch has no full uint32 support
        tensors[name] = torch.from_numpy(np.ascontiguousarray(wide)).clone()
        return {"__ndarray__": name, "dtype": obj.dtype.str}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[encode(k, tensors), encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a pickle-free training state")


def decode(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, list):
        return [decode(v, tensors) for v in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__ndarray__" in skeleton:
        return tensors[skeleton["__ndarray__"]].numpy().astype(np.dtype(skeleton["dtype"]))
    if "__tuple__" in skeleton:
        return tuple(decode(v, tensors) for v in skeleton["__tuple__"])
    if "__items__" in skeleton:
        return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in skeleton["__items__"]}
    return {k: decode(v, tensors) for k, v in skeleton.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def save_state(obj: Any, path: str | Path) -> Path:
    """Write nested state as safetensors (tensors) + JSON skeleton (metadata); fsynced, the umask's mode."""
    from ..io import save_safetensors

    tensors: dict[str, torch.Tensor] = {}
    skeleton = encode(obj, tensors)
    return save_safetensors(tensors, path, metadata={META_KEY: json.dumps(skeleton)})


def load_state(path: str | Path) -> Any:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        skeleton = json.loads(meta[META_KEY])
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc}); the file is "
                              "truncated or corrupt") from None
    return decode(skeleton, tensors)


# -- RNG states ------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states, in plain containers (numpy's as a dict, not a pickled tuple)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(legacy=False),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]  # (version, tuple of 625 ints, gauss_next); JSON brings lists back as lists
    random.setstate((python[0], tuple(python[1]), python[2]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- weights-only unpickling -----------------------------------------------------------------------------------
def deepspeed_globals() -> list[Any]:
    """DeepSpeed's plain classes in its ZeRO checkpoints (a loss-scale record, the ZeRO stage enum, a parameter's
    (start, numel) slice): what torch's weights-only unpickler must be allowed to rebuild, and nothing else."""
    out: list[Any] = []
    for module, names in (("deepspeed.runtime.fp16.loss_scaler", ("LossScaler", "DynamicLossScaler")),
                          ("deepspeed.runtime.zero.config", ("ZeroStageEnum",)),
                          ("deepspeed.utils.tensor_fragment", ("fragment_address",))):
        try:
            mod = __import__(module, fromlist=list(names))
        except ImportError:
            continue
        out += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return out


def numpy_rng_globals() -> list[Any]:
    """What a pickled ``np.random.get_state()`` tuple needs (checkpoints written before the safetensors format)."""
    multiarray = getattr(np, "_core", None) or np.core
    return [np.ndarray, np.dtype, multiarray.multiarray._reconstruct, type(np.dtype(np.uint32))]


def weights_only_load(path: str | Path, map_location: Any = "cpu", allow: Iterable[Any] = ()) -> Any:
    """``torch.load(weights_only=True)`` with an explicit allow-list; a code-running pickle raises
    :class:`UnsafeCheckpointError` naming the file and the refused global, without running anything."""
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "weights only" in text.lower() or "weights_only" in text.lower():
            culprit = re.search(r"GLOBAL (\S+)|global (\S+)", text)
            name = next((g for g in culprit.groups() if g), "") if culprit else ""
            raise UnsafeCheckpointError(
                f"{path}: refused to load: it holds pickled objects that would run code when loaded"
                f"{' (' + name.rstrip('.,') + ')' if name else ''}; only tensors and plain data are read from a "
                "checkpoint. Do not resume from files you do not trust") from None
        raise CheckpointError(f"{path}: not a readable PyTorch file ({exc}); it is truncated or corrupt") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc}); it is "
                              "truncated or corrupt") from None


def guard_deepspeed_loads(engine) -> None:
    """Make a DeepSpeed engine read its checkpoint files with the weights-only unpickler (DeepSpeed 0.19 itself
    calls ``torch.load(weights_only=False)``). Every checkpoint file DeepSpeed reads when resuming (model states,
    ZeRO optimizer partitions) goes through ``engine.checkpoint_engine.load``; this replaces that method."""
    ckpt_engine = getattr(engine, "checkpoint_engine", None)
    if ckpt_engine is None:
        raise CheckpointError("this DeepSpeed version has no engine.checkpoint_engine: refusing to resume from a "
                              "DeepSpeed checkpoint without the weights-only loader")
    ckpt_engine.load = functools.partial(_deepspeed_load, allow=tuple(deepspeed_globals()))


def _deepspeed_load(path: str, map_location: Any = None, allow: tuple = ()) -> Any:
    return weights_only_load(path, map_location=map_location, allow=allow)
