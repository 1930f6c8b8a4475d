"""LoRA adapter directories: save, read, apply and merge (the model-directory side of LoRA; training attaches
the adapters with ``onellm.training.lora.apply_lora``).

An adapter directory (the output of a ``trainable.llm: lora`` run) holds::

    onellm_adapter.json        {"format": "onellm-adapter-v1", "base_model": <base model directory>}
    adapter_config.json        peft's LoRA config
    adapter_model.safetensors  the LoRA weights (peft's naming)
    trained_parts.safetensors  any other part the run trained fully (e.g. UPM parts), OneLLM names
    processor / tokenizer files

``OneLLM.from_pretrained(adapter_dir)`` (or ``from_pretrained(base_dir, adapter=adapter_dir)``) loads the base
and applies the adapter; ``onellm merge-lora`` folds it into a plain model directory.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

ADAPTER_FILE = "onellm_adapter.json"
PARTS_FILE = "trained_parts.safetensors"
ADAPTER_FORMAT = "onellm-adapter-v1"


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_FILE).exists()


def _llm_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("llm."):]: v for k, v in state_dict.items() if k.startswith("llm.")}


def save_adapter(model, directory: str | Path, base_model: str | Path, state_dict: Mapping[str, torch.Tensor],
                 processor=None) -> Path:
    """Write an adapter directory from a (gathered) full state dict of a LoRA-wrapped OneLLM (atomically and
    durably, every file with the umask's mode: peft's safetensors files are created 0600)."""
    from .io import atomic_directory, atomic_write_json, finish_file, save_safetensors

    directory = Path(directory)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    parts = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()
             if k in trainable and not k.startswith("llm.")}
    with atomic_directory(directory) as tmp:
        model.llm.save_pretrained(str(tmp), state_dict=_llm_state(state_dict), safe_serialization=True)
        if parts:
            save_safetensors(parts, tmp / PARTS_FILE)
        atomic_write_json(tmp / ADAPTER_FILE, {"format": ADAPTER_FORMAT, "base_model": str(Path(base_model).resolve()),
                                               "trained_parts": sorted(parts)})
        if processor is not None:
            processor.save_pretrained(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                finish_file(f)
    return directory


def base_of(adapter_dir: str | Path) -> Path:
    from .errors import CheckpointError

    path = Path(adapter_dir) / ADAPTER_FILE
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupt JSON ({exc}); restore the file or train the adapter again") from None
    if not isinstance(meta, dict) or meta.get("format") != ADAPTER_FORMAT or not isinstance(meta.get("base_model"), str):
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{adapter_dir}: unsupported adapter format {fmt!r} (expected {ADAPTER_FORMAT!r} "
                              "with a 'base_model')")
    return Path(meta["base_model"])


def load_adapter(model, adapter_dir: str | Path, trainable: bool = False) -> None:
    """Apply an adapter directory to a loaded base OneLLM (in place). Only safetensors are read: a pickled
    ``adapter_model.bin`` (which could run code when loaded) is refused."""
    from peft import PeftModel
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .errors import CheckpointError

    adapter_dir = Path(adapter_dir)
    base_of(adapter_dir)  # validates the format
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise CheckpointError(f"{adapter_dir}: no adapter_model.safetensors (pickled adapter_model.bin files are not "
                              "loaded: they can run code); save the adapter with safetensors")
    try:
        model.llm = PeftModel.from_pretrained(model.llm, str(adapter_dir), is_trainable=trainable)
    except SafetensorError as exc:
        raise CheckpointError(f"{adapter_dir / 'adapter_model.safetensors'}: unreadable ({exc}); the file is "
                              "truncated or corrupt") from None
    parts_file = adapter_dir / PARTS_FILE
    if parts_file.exists():
        try:
            parts = load_file(str(parts_file))
        except SafetensorError as exc:
            raise CheckpointError(f"{parts_file}: unreadable ({exc}); the file is truncated or corrupt") from None
        own = dict(model.named_parameters())
        unknown = sorted(set(parts) - set(own))
        if unknown:
            raise CheckpointError(f"{parts_file}: parameters the base model does not have: {unknown[:10]}")
        with torch.no_grad():
            for name, value in parts.items():
                own[name].copy_(value.to(own[name].dtype))


def merge_lora(model) -> None:
    """Fold the LoRA weights into the LLM: ``model.llm`` becomes a plain ``LlamaForCausalLM`` again."""
    from peft import PeftModel

    if isinstance(model.llm, PeftModel):
        model.llm = model.llm.merge_and_unload()
