"""Assemble a fresh model directory from local pretrained parts (``onellm init``).

The encoder comes from an open_clip checkpoint file (``visual.*`` keys), the LLM from a HF LLaMA directory, the
tokenizer from a SentencePiece model; whatever is not given is random (the tokenizer is then trained on a small
built-in corpus, so ``onellm init --preset tiny`` works offline in seconds). The tokenizers and the UPM are always
freshly initialised: they are what stage I trains.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from .config import OneLLMConfig
from .data.template import SYSTEM
from .errors import UsageError
from .modalities import get as modality_definition
from .modalities import names as registered_modalities


def builtin_corpus() -> list[str]:
    """Text for a tiny tokenizer: the template, the evaluation prompts and the synthetic world's language."""
    lines = [SYSTEM, f"{SYSTEM}\n\n### Human: What is this?\n### Assistant: a red circle\n###",
             "###Human: Describe it.\n###Assistant: It is a blue square.\n###",
             "0 1 2 3 4 5 6 7 8 9 . , ; : ! ? ' \" ( ) - / #"]
    lines += [modality_definition(m).caption_prompt for m in registered_modalities()]
    try:
        from .data.synth.world import corpus_lines

        lines += corpus_lines()
    except ImportError:  # the synthetic world is optional for this purpose
        pass
    return lines


def load_clip_visual_state(path: str | Path) -> dict[str, torch.Tensor]:
    """``visual.*`` tensors of an open_clip checkpoint (safetensors, a state dict, or OpenAI's TorchScript file),
    with the ``visual.`` prefix removed.

    Read with ``onellm convert``'s loader: safetensors, ``torch.load(weights_only=True)`` (a pickle that wants to run
    code is refused with a ConversionError naming the file) or ``torch.jit.load`` for TorchScript archives (which run
    no Python code)."""
    from .convert import OFFICIAL_PREFIX, clip_tensors

    tensors, _ = clip_tensors(path)
    prefix = OFFICIAL_PREFIX + "clip.visual."
    return {name[len(prefix):]: source.load() for name, source in tensors.items() if name.startswith(prefix)}


def reinitialise(modules: Iterable[nn.Module]) -> None:
    """Re-run every submodule's own initialisation (used after materialising meta tensors)."""
    for module in modules:
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            elif hasattr(sub, "weight") and type(sub).__name__ == "RMSNorm":
                nn.init.ones_(sub.weight)


def build_initial_model(config: OneLLMConfig, clip: str | Path | None = None, llm: str | Path | None = None,
                        seed: int = 0, dtype: torch.dtype = torch.float32):
    """A OneLLM with pretrained encoder / LLM where given, random elsewhere; built without a random 7B detour."""
    from transformers import LlamaForCausalLM

    from .model import OneLLM
    from .model.encoder import build_clip_visual

    torch.manual_seed(seed)
    if clip is None and llm is None:
        return OneLLM(config).to(dtype)
    with torch.device("meta"):
        model = OneLLM(config)
    if llm is not None:
        hf = LlamaForCausalLM.from_pretrained(str(llm), dtype=dtype)
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            want, got = getattr(model.llm.config, name), getattr(hf.config, name)
            if want != got:
                raise UsageError(f"{llm}: {name} = {got} but the preset {config.name!r} expects {want}")
        model.llm = hf
    else:
        with torch.device("cpu"):
            model.llm = LlamaForCausalLM(config.llm.to_hf()).to(dtype)
    for part in (model.tokenizers, model.upm):
        part.to_empty(device="cpu")
        reinitialise([part])
        part.to(dtype)
    model.encoder = build_clip_visual(config.vision)  # open_clip's own initialisation
    if clip is not None:
        missing, unexpected = model.encoder.load_state_dict(load_clip_visual_state(clip), strict=False)
        if missing or unexpected:
            raise UsageError(f"{clip}: CLIP weights do not fit the {config.name!r} encoder: "
                             f"missing {missing[:10]}, unexpected {unexpected[:10]}")
    model.encoder.to(dtype)
    model.set_trainable()
    return model
