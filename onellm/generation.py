"""Text generation from a OneLLM batch: HF ``generate`` on ``inputs_embeds`` with left padding and a KV cache.

Decoding follows the released scripts (spec §1.7): temperature 0.1 and top-p 0.75 by default (``temperature=0``
is greedy), stop at EOS or at the template separator "###", answer = the new text up to the separator.

``config.legacy_kv_offset`` reproduces the released decoding bug bit for bit: after the prefill, the original
wrote each new token's K/V 2 slots too early (offset 30 instead of 32), overwriting the last two prompt
positions, and gave it RoPE positions 2 too small. That equals masking those two prompt positions out after the
prefill and shifting new positions by -2, which :func:`_legacy_decode` does in its own decoding loop.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch

from .data.template import SEPARATOR, extract_answer

LEGACY_SHIFT = 2  # start + end tags the released code forgot to count (cache_image_words = 30, not 32)


@dataclass
class GenerationConfig:
    max_new_tokens: int = 128
    temperature: float = 0.1
    top_p: float = 0.75
    stop_strings: tuple[str, ...] = (SEPARATOR,)
    min_new_tokens: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class GenerationOutput:
    texts: list[str]  # answers: new text up to the separator, stripped
    raw_texts: list[str]  # the full decoded new text
    token_ids: list[list[int]]  # new tokens per sample (EOS and padding removed)
    logits: list[torch.Tensor] | None = None  # per step (B, V), when requested


def _hf_kwargs(model, gen: GenerationConfig) -> dict[str, Any]:
    llm_cfg = model.config.llm
    kwargs: dict[str, Any] = dict(max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens,
                                  eos_token_id=llm_cfg.eos_token_id,
                                  pad_token_id=llm_cfg.pad_token_id, bos_token_id=llm_cfg.bos_token_id)
    if gen.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=None)
    if gen.stop_strings and model.tokenizer is not None:
        kwargs.update(stop_strings=list(gen.stop_strings), tokenizer=model.tokenizer.hf)
    return kwargs


def _finish(model, sequences: torch.Tensor) -> tuple[list[str], list[str], list[list[int]]]:
    eos, pad = model.config.llm.eos_token_id, model.config.llm.pad_token_id
    ids = []
    for row in sequences.tolist():
        row = row[: row.index(eos)] if eos in row else row
        while row and row[-1] == pad:  # finished early on a stop string: the rest is padding
            row.pop()
        ids.append(row)
    if model.tokenizer is None:
        return ["" for _ in ids], ["" for _ in ids], ids
    raw = [model.tokenizer.decode(x) for x in ids]
    return [extract_answer(r) for r in raw], raw, ids


@torch.no_grad()
def generate(model, batch: Mapping[str, Any], gen: GenerationConfig | None = None,
             output_logits: bool = False, streamer=None) -> GenerationOutput:
    """Generate for a left-padded batch (``Collator(padding_side="left")``); see module docstring."""
    gen = gen or GenerationConfig()
    mask = batch["attention_mask"]
    if mask.shape[0] > 1 and not bool(mask[:, -1].all()):
        raise ValueError("generation needs a left-padded batch (collate with padding_side='left')")
    embeds = model.build_inputs_embeds(batch)
    if model.config.legacy_kv_offset:
        return _legacy_decode(model, batch, embeds, gen, output_logits)
    out = model.llm.generate(inputs_embeds=embeds, attention_mask=mask, return_dict_in_generate=True,
                             output_logits=output_logits, streamer=streamer, **_hf_kwargs(model, gen))
    texts, raw, ids = _finish(model, out.sequences)
    return GenerationOutput(texts, raw, ids, list(out.logits) if output_logits else None)


def _next_token(logits: torch.Tensor, gen: GenerationConfig) -> torch.Tensor:
    if gen.greedy:
        return logits.argmax(-1)
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scores = TopPLogitsWarper(gen.top_p)(None, TemperatureLogitsWarper(gen.temperature)(None, logits.float()))
    return torch.multinomial(torch.softmax(scores, -1), 1)[:, 0]


def _legacy_decode(model, batch, embeds: torch.Tensor, gen: GenerationConfig, output_logits: bool) -> GenerationOutput:
    """The released decoding: after the prefill, the last two prompt positions of every sample that carries a
    modality block are invisible and new positions are 2 smaller (spec §1.7, §7.1)."""
    llm = model.llm
    mask = batch["attention_mask"].clone()
    B, S = mask.shape
    has_block = batch["modality_mask"].any(-1)  # (B,)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1]
    shift = has_block.long() * LEGACY_SHIFT  # (B,)
    mask[has_block, S - LEGACY_SHIFT:] = 0  # the overwritten K/V slots are never attended again
    next_pos = positions[:, -1] + 1 - shift  # (B,)
    eos, pad = model.config.llm.eos_token_id, model.config.llm.pad_token_id
    done = torch.zeros(B, dtype=torch.bool, device=mask.device)
    tokens, all_logits = [], []
    for step in range(gen.max_new_tokens):
        if output_logits:
            all_logits.append(logits.float())
        tok = _next_token(logits, gen)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        tokens.append(tok)
        done |= tok == eos
        if model.tokenizer is not None and gen.stop_strings:
            seqs = torch.stack(tokens, 1).tolist()
            done |= torch.tensor([any(s in model.tokenizer.decode(x) for s in gen.stop_strings) for x in seqs],
                                 device=done.device)
        if bool(done.all()) or step == gen.max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=mask.device)], 1)
        out = llm(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                  past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    texts, raw, ids = _finish(model, torch.stack(tokens, 1))
    return GenerationOutput(texts, raw, ids, all_logits if output_logits else None)


def stream_generate(model, batch: Mapping[str, Any], gen: GenerationConfig | None = None) -> Iterator[str]:
    """Yield text pieces of a single conversation as they are generated (stops before the separator)."""
    from transformers import TextIteratorStreamer

    if model.tokenizer is None:
        raise ValueError("streaming needs the model's tokenizer")
    if batch["input_ids"].shape[0] != 1:
        raise ValueError("streaming takes one conversation at a time")
    streamer = TextIteratorStreamer(model.tokenizer.hf, skip_prompt=False, skip_special_tokens=True)
    errors: list[BaseException] = []

    def work():
        try:
            generate(model, batch, gen, streamer=streamer)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    text = ""
    emitted = 0
    for piece in streamer:
        text += piece
        visible = text.split(SEPARATOR)[0]
        # hold back a possible partial separator at the end
        safe = len(visible) if SEPARATOR in text else max(len(visible) - len(SEPARATOR) + 1, 0)
        if safe > emitted:
            yield visible[emitted:safe]
            emitted = safe
        if SEPARATOR in text:
            break
    thread.join()
    if errors:
        raise errors[0]
    visible = text.split(SEPARATOR)[0].rstrip()
    if len(visible) > emitted:
        yield visible[emitted:]
