"""Model directories, HuggingFace layout: ``config.json`` (``model_type: onellm``, ``auto_map``), safetensors weights
(``model.safetensors`` or HF's ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``), the
processor's files (tokenizer, ``processor_config.json``), the remote code and a model card.

Saving is atomic (written to a temporary sibling directory, fsynced, then swapped in); loading is strict (a missing
or unexpected key is an error listing them) and memory-lean: the model is built on the meta device and each shard is
assigned in place, so a 7B model never exists twice in memory. Directories written before the model was HF-native
(``"format": "onellm-v1"`` in ``config.json``, flat input fields, no processor config) load in place, unchanged:
their weight names are the same.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import torch

from .config import OneLLMConfig
from .errors import CheckpointError
from .io import atomic_directory, save_safetensors

__all__ = ["CheckpointError", "atomic_directory", "save_model_directory", "load_model_directory", "write_weights"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
FORMAT = "onellm-v1"




# Read side: every error names the file (a library's "incomplete metadata" or bare JSONDecodeError does not)
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise CheckpointError(f"{path}: corrupt JSON{where} ({getattr(exc, 'msg', exc)}); restore the file or "
                              "save the model again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _not_a_model_dir(directory: Path) -> CheckpointError:
    if not directory.exists():
        return CheckpointError(f"{directory}: no such model directory")
    if (directory / "model" / CONFIG_FILE).exists():
        return CheckpointError(f"{directory}: not a OneLLM model directory (no {CONFIG_FILE}); "
                               f"did you mean {directory / 'model'}?")
    return CheckpointError(f"{directory}: not a OneLLM model directory (no {CONFIG_FILE}); give a directory made "
                           "by `onellm init`, `onellm convert` or a training run's output_dir/model")


def _load_shard(path: Path, device: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(f"{path}: weight file missing from the model directory")
    try:
        return load_file(str(path), device=device)
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc}); it is truncated or corrupt: "
                              "save or copy the model again") from None


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
    s = size.strip().upper()
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * factor)
    return int(s)


def shard_state_dict(tensors: Iterable[tuple[str, torch.Tensor]], max_shard_bytes: int
                     ) -> Iterator[dict[str, torch.Tensor]]:
    """Group (name, tensor) pairs into shards of at most ``max_shard_bytes`` (a bigger tensor gets its own)."""
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for name, t in tensors:
        nbytes = t.numel() * t.element_size()
        if shard and size + nbytes > max_shard_bytes:
            yield shard
            shard, size = {}, 0
        shard[name] = t
        size += nbytes
    if shard:
        yield shard


def write_weights(directory: Path, tensors: Iterable[tuple[str, torch.Tensor]], max_shard_size: int | str = "5GB",
                  metadata: Mapping[str, str] | None = None) -> list[str]:
    """Write safetensors shards (``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` + index)."""
    meta = {"format": "pt", **(metadata or {})}
    max_bytes = _parse_size(max_shard_size)
    names: list[tuple[str, list[str], int]] = []
    for shard in shard_state_dict(tensors, max_bytes):  # no enumerate: its tuple would keep the last shard alive
        fname = f"model-{len(names) + 1:05d}.safetensors"
        save_safetensors({n: t.detach().contiguous().cpu() for n, t in shard.items()}, directory / fname, meta)
        names.append((fname, list(shard), sum(t.numel() * t.element_size() for t in shard.values())))
        del shard  # peak memory: one shard plus one tensor
    if len(names) == 1:
        os.replace(directory / names[0][0], directory / WEIGHTS_FILE)
        return [WEIGHTS_FILE]
    total = len(names)
    weight_map, files = {}, []
    for k, (fname, keys, _) in enumerate(names):
        final = f"model-{k + 1:05d}-of-{total:05d}.safetensors"
        os.replace(directory / fname, directory / final)
        files.append(final)
        weight_map.update({key: final for key in keys})
    index = {"metadata": {"total_size": sum(n[2] for n in names)}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return files


def weight_files(directory: Path) -> list[Path]:
    if (directory / INDEX_FILE).exists():
        index = _read_json(directory / INDEX_FILE)
        if not isinstance(index.get("weight_map"), dict):
            raise CheckpointError(f"{directory / INDEX_FILE}: no 'weight_map' object")
        return [directory / f for f in sorted(set(map(str, index["weight_map"].values())))]
    if (directory / WEIGHTS_FILE).exists():
        return [directory / WEIGHTS_FILE]
    raise CheckpointError(f"{directory}: no {WEIGHTS_FILE} or {INDEX_FILE}")


def save_model_directory(model, directory: str | Path, processor=None, max_shard_size: int | str = "5GB",
                         state_dict: Mapping[str, torch.Tensor] | None = None, **kwargs) -> Path:
    """Write a model directory atomically (written to a temporary sibling, fsynced, then swapped in):
    ``config.json`` with ``auto_map``, HF-sharded safetensors weights, the processor's files (tokenizer,
    ``processor_config.json``), the remote code (``onellm.hf_export``) and a model card (``README.md``)."""
    from .hf_export import AUTO_MAP, export_remote_code
    from .model_card import write_model_card

    directory = Path(directory)
    config = model.config
    config.auto_map = dict(AUTO_MAP)
    config.architectures = ["OneLLMForConditionalGeneration"]
    with atomic_directory(directory) as tmp:
        model.save_weights_and_config(tmp, max_shard_size=max_shard_size, state_dict=state_dict,
                                      safe_serialization=True, **kwargs)
        if processor is not None:
            processor.save_pretrained(tmp)
        export_remote_code(tmp)
        write_model_card(tmp, config, has_processor=processor is not None)
    return directory


def read_config(directory: str | Path) -> OneLLMConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.exists():
        raise _not_a_model_dir(Path(directory))
    data = _read_json(path)
    fmt = data.pop("format", None)  # directories written before the model was HF-native say "onellm-v1"
    if fmt is not None and fmt != FORMAT:
        raise CheckpointError(f"{path}: unsupported format {fmt!r} (expected {FORMAT!r})")
    if fmt is None and data.get("model_type") != OneLLMConfig.model_type:
        raise CheckpointError(f"{path}: not a OneLLM config (model_type {data.get('model_type')!r}, expected "
                              f"{OneLLMConfig.model_type!r})")
    try:
        return OneLLMConfig.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _rebuild_buffers(model, device: torch.device) -> None:
    """Non-persistent buffers are not in the state dict; recreate the ones left on the meta device."""
    llm = model.llm.get_decoder() if hasattr(model.llm, "get_decoder") else model.llm.model
    rotary = getattr(llm, "rotary_emb", None)
    if rotary is not None and any(b.is_meta for b in rotary.buffers()):
        with torch.device(device):
            llm.rotary_emb = type(rotary)(model.llm.config)
    leftover = [n for n, b in model.named_buffers() if b.is_meta]
    if leftover:
        raise CheckpointError(f"buffers not restored after loading: {leftover}")


def load_model_directory(directory: str | Path, model_class, device: str | torch.device | None = None,
                         dtype: torch.dtype | None = None, config: OneLLMConfig | None = None,
                         adapter: str | Path | None = None):
    """Build ``OneLLMForConditionalGeneration`` from a model directory (strict), optionally with a LoRA adapter
    directory on top. ``directory`` may itself be an adapter directory: its base model is loaded first. Reads the
    HF-native layout and the one written before it (``"format": "onellm-v1"``, same weight names) alike."""
    from .adapters import base_of, is_adapter_dir, load_adapter

    directory = Path(directory)
    if is_adapter_dir(directory):
        if adapter is not None:
            raise CheckpointError(f"{directory} is an adapter directory; pass the base model as the directory")
        adapter, directory = directory, base_of(directory)
    if adapter is not None:
        model = load_model_directory(directory, model_class, device=device, dtype=dtype, config=config)
        load_adapter(model, adapter)
        model.config._name_or_path = model.name_or_path = str(adapter)  # it holds the tuned model's processor
        model.llm.to(device=torch.device(device or "cpu"), dtype=dtype) if dtype else model.llm.to(
            torch.device(device or "cpu"))
        return model.eval()
    config = config or read_config(directory)
    device = torch.device(device or "cpu")
    with torch.device("meta"):
        model = model_class(config)
    expected = dict(model.state_dict())
    seen: set[str] = set()
    unexpected: list[str] = []
    mismatched: list[str] = []
    for f in weight_files(directory):
        shard = _load_shard(f, str(device))
        for name in list(shard):
            t = shard[name]
            if name not in expected:
                unexpected.append(name)
                del shard[name]
                continue
            if tuple(t.shape) != tuple(expected[name].shape):
                mismatched.append(f"{name}: file {tuple(t.shape)} vs model {tuple(expected[name].shape)}")
                del shard[name]
                continue
            if dtype is not None and t.is_floating_point():
                shard[name] = t.to(dtype)
        model.load_state_dict(shard, strict=False, assign=True)
        seen.update(shard)
        del shard
    missing = sorted(set(expected) - seen)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing[:20]}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}")
        if mismatched:
            parts.append(f"shape mismatches: {mismatched[:20]}")
        raise CheckpointError(f"{directory}: weights do not match the config:\n  " + "\n  ".join(parts))
    _rebuild_buffers(model, device)
    model.set_trainable()
    model.config._name_or_path = model.name_or_path = str(directory)  # HF's record of where a model came from
    return model.eval()


def write_config(directory: Path, config: OneLLMConfig) -> None:
    """``config.json`` of a model directory written without a model object (the converter streams tensors)."""
    from .hf_export import AUTO_MAP

    config.auto_map = dict(AUTO_MAP)
    config.architectures = ["OneLLMForConditionalGeneration"]
    config.save_pretrained(str(directory))
