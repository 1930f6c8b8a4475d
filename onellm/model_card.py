"""The model card (``README.md``) of a model directory: what the model is, its configuration, how to load it."""
from __future__ import annotations

from pathlib import Path

from .config import OneLLMConfig
from .modalities import get as modality_definition
from .model.tokenizers import input_shape


def model_card(config: OneLLMConfig, has_processor: bool = True) -> str:
    """Markdown with HF front matter, generated from the config (nothing to fill in by hand)."""
    v, u, l = config.vision, config.upm, config.llm
    rows = "\n".join(
        f"| {m} | `{modality_definition(m).marker}` | {config.placeholder_token_id(m)} | "
        f"{tuple(input_shape(config, m))} | {modality_definition(m).num_clip_tokens(config)} | "
        f"{'CLIP patch embedding' if modality_definition(m).uses_clip_patches else 'own tokenizer'} |"
        for m in config.modalities)
    tags = "\n".join(f"- {m}" for m in config.modalities)
    usage = ('from transformers import AutoModelForCausalLM, AutoProcessor\n\n'
             'model = AutoModelForCausalLM.from_pretrained("PATH", trust_remote_code=True)\n'
             'processor = AutoProcessor.from_pretrained("PATH", trust_remote_code=True)\n'
             f'print(model.chat(processor, "What is in it?", {config.modalities[0]}="input file"))')
    return f"""---
library_name: transformers
pipeline_tag: image-text-to-text
tags:
- onellm
- multimodal
{tags}
---

# OneLLM model `{config.name}`

A [OneLLM](https://arxiv.org/abs/2312.03700) model (CVPR 2024, "One Framework to Align All Modalities with
Language"): each modality passes a lightweight tokenizer, a frozen CLIP ViT shared by all modalities and a
soft-routed mixture of projection experts (the UPM) into a LLaMA decoder. Written by the `onellm` library; this
card is generated from `config.json`.

## Modalities

| modality | marker | placeholder id | input shape | CLIP tokens (with CLS) | tokenizer |
|---|---|---|---|---|---|
{rows}

Each input takes {config.block_length} positions in the sequence (start tag, {u.num_tokens} tokens, end tag).

## Configuration

| part | |
|---|---|
| CLIP ViT | width {v.width}, {v.layers} layers, patch {v.patch_size}, image {v.image_size} |
| UPM | {u.num_experts} experts x {u.expert_layers} blocks, {u.num_tokens} modality tokens |
| LLM | LLaMA, hidden {l.hidden_size}, {l.num_layers} layers, {l.num_heads} heads, vocabulary {l.vocab_size} |
| sequence | up to {config.max_seq_len} positions |
| released-code switches | legacy_prompt={config.legacy_prompt}, legacy_kv_offset={config.legacy_kv_offset} |

## Use

```python
{usage}
```
{"" if has_processor else chr(10) + "This directory has no processor files (tokenizer): add them before use." + chr(10)}
With the library installed: `onellm infer --model PATH --input requests.jsonl --output answers.jsonl`, or
`OneLLMForConditionalGeneration.from_pretrained(PATH)`.
"""


def write_model_card(directory: str | Path, config: OneLLMConfig, has_processor: bool = True) -> Path:
    path = Path(directory) / "README.md"
    path.write_text(model_card(config, has_processor), encoding="utf-8")
    return path
