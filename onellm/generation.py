"""Text generation: HF ``GenerationMixin.generate`` on the processor's batch (placeholder ids in ``input_ids``), with
left padding and a KV cache; plus the released scripts' decoding behind ``config.legacy_kv_offset``.

Decoding follows the released scripts (spec §1.7): temperature 0.1 and top-p 0.75 by default (``temperature=0``
is greedy), stop at EOS or at the template separator "###", answer = the new text up to the separator.

``config.legacy_kv_offset`` reproduces the released decoding bug bit for bit: after the prefill, the original
wrote each new token's K/V 2 slots too early (offset 30 instead of 32), overwriting the last two prompt
positions, and gave it RoPE positions 2 too small. That equals masking those two prompt positions out after the
prefill and shifting new positions by -2, which :func:`legacy_decode` does in its own decoding loop.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch
from transformers import StoppingCriteria

from .data.template import SEPARATOR

LEGACY_SHIFT = 2  # start + end tags the released code forgot to count (cache_image_words = 30, not 32)


@dataclass
class GenerationConfig:
    """Sampling options of ``onellm infer`` / ``chat`` / ``eval`` (the released defaults)."""

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


class StopOnStrings(StoppingCriteria):
    """Stops a sequence once its generated text contains a stop string (the template separator "###").

    Only the new tokens are decoded (the last ``window`` of them: a stop string appears at most a few tokens back
    from the step that completes it, and earlier steps were checked already), so the prompt's placeholder ids
    never reach the tokenizer."""

    def __init__(self, decode, prompt_length: int, stop_strings: Sequence[str], window: int = 8):
        self.decode, self.prompt_length, self.stops, self.window = decode, prompt_length, tuple(stop_strings), window

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None,
                 **kwargs: Any) -> torch.BoolTensor:
        tails = input_ids[:, self.prompt_length:][:, -self.window:].tolist()
        done = [any(s in self.decode(t) for s in self.stops) for t in tails]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def hf_generate_kwargs(model, gen: GenerationConfig, processor=None, prompt_length: int = 0) -> dict[str, Any]:
    """``model.generate`` keyword arguments for our sampling options."""
    llm = model.config.llm
    kwargs: dict[str, Any] = dict(max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens,
                                  eos_token_id=llm.eos_token_id, pad_token_id=llm.pad_token_id,
                                  bos_token_id=llm.bos_token_id)
    if gen.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=None)
    if gen.stop_strings and processor is not None:
        kwargs["stopping_criteria"] = [StopOnStrings(processor.decode, prompt_length, gen.stop_strings)]
    return kwargs


def _finish(model, processor, new_tokens: torch.Tensor) -> tuple[list[str], list[str], list[list[int]]]:
    eos, pad = model.config.llm.eos_token_id, model.config.llm.pad_token_id
    ids = []
    for row in new_tokens.tolist():
        row = row[: row.index(eos)] if eos in row else row
        while row and row[-1] == pad:  # finished early on a stop string: the rest is padding
            row.pop()
        ids.append(row)
    if processor is None:
        return ["" for _ in ids], ["" for _ in ids], ids
    raw = [processor.decode(x) for x in ids]
    return [r.split(SEPARATOR)[0].strip() for r in raw], raw, ids


@torch.no_grad()
def generate(model, processor, inputs: Mapping[str, Any], gen: GenerationConfig | None = None,
             output_logits: bool = False, streamer=None) -> GenerationOutput:
    """Answers for a left-padded batch (``processor(...)`` or ``processor.collate(samples)`` on the model's device).

    ``inputs`` holds ``input_ids``, ``attention_mask`` and the modality inputs; any ``labels`` are ignored."""
    gen = gen or GenerationConfig()
    inputs = {k: v for k, v in inputs.items() if k != "labels"}
    mask = inputs["attention_mask"]
    if mask.shape[0] > 1 and not bool(mask[:, -1].all()):
        raise ValueError("generation needs a left-padded batch (collate with padding_side='left')")
    prompt_length = inputs["input_ids"].shape[1]
    out = model.generate(**inputs, return_dict_in_generate=True, output_logits=output_logits, streamer=streamer,
                         **hf_generate_kwargs(model, gen, processor, prompt_length))
    texts, raw, ids = _finish(model, processor, out.sequences[:, prompt_length:])
    return GenerationOutput(texts, raw, ids, list(out.logits) if output_logits else None)


def _next_token(logits: torch.Tensor, do_sample: bool, temperature: float | None, top_p: float | None
                ) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    scores = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.float()))
    return torch.multinomial(torch.softmax(scores, -1), 1)[:, 0]


@torch.no_grad()
def legacy_decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, max_new_tokens: int = 128,
                  do_sample: bool = False, temperature: float | None = None, top_p: float | None = None,
                  stopping_criteria: Sequence[StoppingCriteria] = (), eos_token_id: int | None = None,
                  pad_token_id: int | None = None, output_logits: bool = False, streamer=None,
                  return_dict_in_generate: bool = True, **kwargs: Any):
    """The released decoding: after the prefill, the last two prompt positions of every sample that carries a
    modality block are invisible and new positions are 2 smaller (spec §1.7, §7.1). Returns what HF's generate
    returns (``.sequences`` = prompt + new tokens, ``.logits`` per step when asked)."""
    from transformers.generation.utils import GenerateDecoderOnlyOutput

    kwargs = {k: v for k, v in kwargs.items() if k not in ("min_new_tokens", "bos_token_id", "top_k", "use_cache")}
    llm = model.llm
    mask = attention_mask.clone()
    B, S = mask.shape
    has_block = (input_ids >= model.config.llm.vocab_size).any(-1)  # (B,) placeholder ids are out of vocabulary
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    embeds = model.embed_inputs(input_ids, kwargs)
    out = llm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True)
    cache, logits = out.past_key_values, out.logits[:, -1]
    shift = has_block.long() * LEGACY_SHIFT  # (B,)
    mask[has_block, S - LEGACY_SHIFT:] = 0  # the overwritten K/V slots are never attended again
    next_pos = positions[:, -1] + 1 - shift  # (B,)
    eos = model.config.llm.eos_token_id if eos_token_id is None else eos_token_id
    pad = model.config.llm.pad_token_id if pad_token_id is None else pad_token_id
    done = torch.zeros(B, dtype=torch.bool, device=mask.device)
    tokens, all_logits = [], []
    if streamer is not None:
        streamer.put(input_ids.cpu())
    for step in range(max_new_tokens):
        if output_logits:
            all_logits.append(logits.float())
        tok = _next_token(logits, do_sample, temperature, top_p)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        tokens.append(tok)
        if streamer is not None:
            streamer.put(tok.cpu())
        done |= tok == eos
        sequences = torch.cat([input_ids, torch.stack(tokens, 1)], 1)
        for criterion in stopping_criteria:
            done |= criterion(sequences, None)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones(B, 1, dtype=mask.dtype, device=mask.device)], 1)
        out = llm(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                  past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        next_pos = next_pos + 1
    if streamer is not None:
        streamer.end()
    sequences = torch.cat([input_ids, torch.stack(tokens, 1)], 1)
    if not return_dict_in_generate:
        return sequences
    return GenerateDecoderOnlyOutput(sequences=sequences, logits=tuple(all_logits) if output_logits else None)


def stream_generate(model, processor, inputs: Mapping[str, Any], gen: GenerationConfig | None = None,
                    stop_event: threading.Event | None = None) -> Iterator[str]:
    """Yield text pieces of one conversation as they are generated (stops before the separator).

    Setting ``stop_event`` ends the generation after the current token. If the consumer stops iterating early (an
    exception such as Ctrl-C's KeyboardInterrupt, or closing the generator), the generation is stopped and its
    thread joined before control returns: no decoding keeps running behind the caller's back."""
    from transformers import TextIteratorStreamer

    if inputs["input_ids"].shape[0] != 1:
        raise ValueError("streaming takes one conversation at a time")
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    errors: list[BaseException] = []
    gen = gen or GenerationConfig()
    prompt_length = inputs["input_ids"].shape[1]
    abandon = threading.Event()

    def work():
        try:
            kwargs = hf_generate_kwargs(model, gen, processor, prompt_length)
            kwargs.setdefault("stopping_criteria", []).append(_EventStop(abandon, stop_event))
            model.generate(**{k: v for k, v in inputs.items() if k != "labels"}, streamer=streamer, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    text = ""
    emitted = 0
    try:
        thread.start()
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
    finally:
        abandon.set()  # a no-op when generation already ended; otherwise it ends after the current token
        _join_through_interrupts(thread)
    if errors:
        raise errors[0]
    visible = text.split(SEPARATOR)[0].rstrip()
    if len(visible) > emitted:
        yield visible[emitted:]


def _join_through_interrupts(thread: threading.Thread) -> None:
    """Join ``thread`` even if Ctrl-C arrives again meanwhile (the stop is already requested): the caller gets
    control back only once no decoding runs behind it."""
    while thread.ident is not None and thread.is_alive():
        try:
            thread.join()
        except KeyboardInterrupt:
            continue


class _EventStop(StoppingCriteria):
    """Stops every sequence once any of ``events`` is set (a UI's stop button, Ctrl-C in the chat)."""

    def __init__(self, *events: threading.Event | None):
        self.events = [e for e in events if e is not None]

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs: Any) -> torch.BoolTensor:
        stop = any(e.is_set() for e in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)
