"""Frozen-feature cache: CLIP outputs of inputs whose whole path to the UPM is frozen (image, video, depth, normal).

In the alignment stages CLIP and its patch embedding are frozen, so an image's CLIP features never change: encoding
them once (``onellm cache-features``) and reading them back during training skips the most expensive frozen part of
every step. Features are computed with the eval transform (no random crop), frame-averaged as the model does, and
stored in the model's dtype, so training on them gives exactly the loss and gradients of training on the same
(eval-transformed) inputs.

Layout of a cache directory::

    index.json                  {"model": ..., "dtype": ..., "entries": {"<record id>#<input index>": "shard-00003.safetensors"}}
    shard-00000.safetensors     tensors named "<record id>#<input index>", each (L + 1, D)

A shard is written completely and fsynced before the index that points to it is (atomically, durably) rewritten,
so a killed run or a power loss loses at most the shard in progress and a rerun continues where the index stops.
Everything is safetensors or JSON: reading a cache never unpickles anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Collection, Iterable

import torch

from .modalities import get as modality_definition

INDEX = "index.json"


def cacheable(modality: str) -> bool:
    """Inputs that reach CLIP through its own frozen patch embedding have a frozen path to the UPM."""
    return modality_definition(modality).uses_clip_patches


class CachedFeatures:
    """Marks a tensor in a sample's inputs as CLIP features (L + 1, D) rather than a raw input."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


class CachedBlocks:
    """Marks a tensor in a sample's inputs as a finished modality block (K + 2, D_llm): encoded once and reused
    (the web demo across turns); the model scatters it as it is."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor


def feature_key(record_id: str, index: int) -> str:
    return f"{record_id}#{index}"


class FeatureStore:
    """Reads a cache directory; safetensors shards are opened lazily (per DataLoader worker)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        path = self.dir / INDEX
        if not path.exists():
            raise FileNotFoundError(f"{self.dir}: not a feature cache (no {INDEX}); run `onellm cache-features`")
        meta = _read_index(path)
        self.entries: dict[str, str] = meta["entries"]
        self.meta = meta
        self._handles: dict[str, object] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str) -> torch.Tensor:
        from safetensors import SafetensorError, safe_open

        from .data.errors import InputError

        shard = self.entries[key]
        try:
            handle = self._handles.get(shard)
            if handle is None:
                handle = self._handles[shard] = safe_open(str(self.dir / shard), framework="pt")
            return handle.get_tensor(key)
        except (SafetensorError, OSError) as exc:  # the sample fails with the shard named; training goes on
            raise InputError(self.dir / shard, f"unreadable feature cache shard ({exc}); rerun "
                                               "`onellm cache-features` after deleting it") from None

    def __getstate__(self):  # DataLoader workers reopen their own handles
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


def _read_index(path: Path) -> dict:
    from .errors import UsageError

    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: corrupt feature cache index ({exc}); delete the cache folder and rerun "
                         "`onellm cache-features`") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("entries"), dict):
        raise UsageError(f"{path}: not a feature cache index (no 'entries' object)")
    return meta


def _write_index(directory: Path, meta: dict) -> None:
    from .io import atomic_write_json, fsync_dir

    fsync_dir(directory)  # the new shard's directory entry is durable before the index names it
    atomic_write_json(directory / INDEX, meta, indent=None)


def cache_features(model, records: Iterable, out: str | Path, batch_size: int = 32, num_workers: int = 2,
                   shard_size: int = 2048, progress: bool = True,
                   modalities: Collection[str] | None = None) -> dict[str, int]:
    """Encode every cacheable input of ``records`` (of ``modalities`` only, when given) into ``out`` (resumable).
    Returns counts."""
    from torch.utils.data import DataLoader, Dataset
    from tqdm import tqdm

    from .data.errors import InputError
    from .data.loaders import load_modality
    from .io import save_safetensors

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    dtype = next(model.upm.parameters()).dtype
    meta = (_read_index(out / INDEX) if (out / INDEX).exists()
            else {"model": str(model.name_or_path), "dtype": str(dtype), "entries": {}})
    entries: dict[str, str] = meta["entries"]
    todo = [(r.id, k, ref) for r in records for k, ref in enumerate(r.inputs)
            if cacheable(ref.modality) and feature_key(r.id, k) not in entries
            and (modalities is None or modality_definition(ref.modality).name in modalities)]

    class _Inputs(Dataset):
        def __len__(self):
            return len(todo)

        def __getitem__(self, i):
            rid, k, ref = todo[i]
            try:
                return feature_key(rid, k), ref.modality, load_modality(ref.modality, ref.as_source(), train=False,
                                                                         config=model.config), None
            except InputError as exc:
                return feature_key(rid, k), ref.modality, None, str(exc)

    loader = DataLoader(_Inputs(), batch_size=1, num_workers=num_workers, collate_fn=lambda x: x[0])
    counts = {"cached": len(entries), "new": 0, "failed": 0}
    shard: dict[str, torch.Tensor] = {}
    pending: dict[str, list[tuple[str, torch.Tensor]]] = {}
    n_shards = len({*entries.values()})

    def flush_group(modality: str) -> None:
        items = pending.pop(modality, [])
        if not items:
            return
        x = torch.stack([t for _, t in items]).to(device, dtype)
        with torch.no_grad():
            feats = model.encode_clip(modality, x).to(dtype).cpu()  # (N, L+1, D), frame-averaged
        for (key, _), f in zip(items, feats):
            shard[key] = f.contiguous()

    def flush_shard() -> None:
        nonlocal n_shards, shard
        if not shard:
            return
        name = f"shard-{n_shards:05d}.safetensors"
        save_safetensors(shard, out / name)  # fsynced, the umask's mode
        entries.update({key: name for key in shard})
        _write_index(out, meta)  # only now do these features exist for readers and for a resumed run
        counts["new"] += len(shard)
        n_shards += 1
        shard = {}

    bar = tqdm(total=len(todo), disable=not progress, unit="input", dynamic_ncols=True)
    for key, modality, tensor, error in loader:
        bar.update(1)
        if error is not None:
            counts["failed"] += 1
            continue
        pending.setdefault(modality, []).append((key, tensor))
        if len(pending[modality]) >= batch_size:
            flush_group(modality)
        if len(shard) >= shard_size:
            flush_shard()
    for modality in list(pending):
        flush_group(modality)
    flush_shard()
    bar.close()
    if not (out / INDEX).exists():
        _write_index(out, meta)
    counts["cached"] += counts["new"]
    return counts
