"""LoRA instruction tuning with ``peft``: adapters on the LLM (optionally on a 4-bit base). Adapter directories
(save, load, merge) are model-directory code and live in ``onellm.adapters``; they are re-exported here."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from .recipe import LoraSpec

from ..adapters import (ADAPTER_FILE, ADAPTER_FORMAT, PARTS_FILE, base_of, is_adapter_dir, load_adapter,  # noqa: F401
                        merge_lora, save_adapter)


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


