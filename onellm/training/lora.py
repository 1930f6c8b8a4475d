"""LoRA instruction tuning with ``peft``: adapters on the LLM, adapter directories, merging.

An adapter directory (the output of a ``trainable.llm: lora`` run) holds::

    onellm_adapter.json        {"format": "onellm-adapter-v1", "base_model": <base model directory>}
    adapter_config.json        peft's LoRA config
    adapter_model.safetensors  the LoRA weights (peft's naming)
    trained_parts.safetensors  any other part the run trained fully (e.g. UPM parts), OneLLM names
    tokenizer files

``OneLLM.from_pretrained(adapter_dir)`` (or ``from_pretrained(base_dir, adapter=adapter_dir)``) loads the base
and applies the adapter; ``onellm merge-lora`` folds it into a plain model directory.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Mapping

import torch

from .recipe import LoraSpec

ADAPTER_FILE = "onellm_adapter.json"
PARTS_FILE = "trained_parts.safetensors"
ADAPTER_FORMAT = "onellm-adapter-v1"


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_FILE).exists()


def apply_lora(model, spec: LoraSpec) -> None:
    """Wrap ``model.llm`` with LoRA adapters (only they train in the LLM; other parts keep their flags)."""
    from peft import LoraConfig, get_peft_model

    if spec.load_in_4bit:
        quantize_4bit(model)
    config = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=list(spec.target_modules), task_type="CAUSAL_LM", bias="none")
    model.llm = get_peft_model(model.llm, config)


def quantize_4bit(model) -> bool:
    """NF4-quantise the LLM's linear layers when bitsandbytes and a CUDA GPU are there; else warn and go on."""
    try:
        import bitsandbytes as bnb  # noqa: F401
    except ImportError:
        warnings.warn("lora.load_in_4bit: bitsandbytes is not installed; training with unquantised base weights")
        return False
    if not torch.cuda.is_available():
        warnings.warn("lora.load_in_4bit: no CUDA GPU; training with unquantised base weights")
        return False
    from torch import nn

    decoder = model.llm.get_decoder()
    for layer in decoder.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                          compute_dtype=torch.bfloat16, quant_type="nf4")
                    q.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4")
                    setattr(parent, name, q.cuda())  # quantisation happens on the move to the GPU
    return True


def _llm_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("llm."):]: v for k, v in state_dict.items() if k.startswith("llm.")}


def save_adapter(model, directory: str | Path, base_model: str | Path, state_dict: Mapping[str, torch.Tensor],
                 tokenizer=None) -> Path:
    """Write an adapter directory from a (gathered) full state dict of a LoRA-wrapped OneLLM (atomically and
    durably, every file with the umask's mode: peft's safetensors files are created 0600)."""
    from ..io import atomic_directory, atomic_write_json, finish_file, save_safetensors

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
        if tokenizer is not None:
            tokenizer.save(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                finish_file(f)
    return directory


def base_of(adapter_dir: str | Path) -> Path:
    from ..checkpoint import CheckpointError

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

    from ..checkpoint import CheckpointError

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
