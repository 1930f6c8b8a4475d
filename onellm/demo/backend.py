"""The model-facing half of the web demo: load the model, encode uploads once, build prompts, stream batched answers.

The UI (``onellm.demo.app``) calls only :class:`DemoBackend`; nothing else in the demo touches the model, the
processor or the generation code, so a change of those interfaces is a change of this file.

* **Encoded once per upload.** :meth:`DemoBackend.encode` loads a file with the modality's loader (through the
  processor, the original preprocessing) and encodes it into its block once (tokenizer, CLIP, UPM); the block is
  cached (LRU) under the file's identity (resolved path, mtime, size, and the same for every file option such as a
  depth map's RGB image). Every turn reuses it: the batch carries it as ``<m>_blocks`` (the model's finished-blocks
  input), so a turn runs only the LLM. The UI encodes on upload, so errors show at once; a turn encodes whatever is
  not cached yet.
* **Prompts** are the processor's inference prompt with the conversation so far (``history``); when prompt plus
  ``max_new_tokens`` would not fit ``config.max_seq_len``, the oldest turns are dropped. ``template="none"`` is
  ``onellm infer --template none`` (the raw question, no history), for alignment-only models.
* **Generation** is the path ``onellm infer`` takes (``model.generate`` with ``hf_generate_kwargs`` on a left-padded
  ``processor.collate`` batch), with two additions that change no answer: a streamer that hands every row's text to
  its own request as it grows, and a stopping criterion per row (its stop button, its own ``max_new_tokens``). The
  final answer of a row is decoded from its tokens as ``onellm.generation.generate`` does, so a greedy turn without
  history equals ``onellm infer --temperature 0`` on the same input.
* **Concurrency**: chat handlers submit requests to a :class:`~onellm.demo.batcher.Batcher`; requests waiting
  together run as one batch (greedy answers do not depend on the batch, a test of the model holds this).
"""
from __future__ import annotations

import dataclasses
import os
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from ..data.errors import InputError
from ..data.template import SEPARATOR
from ..generation import GenerationConfig, hf_generate_kwargs
from ..modalities import get as modality_definition
from .batcher import Batcher, Request, Update

__all__ = ["DemoBackend", "EncodedInput", "Update", "model_modalities"]

TEMPLATES = ("chat", "none")  # as onellm infer --template
PREVIEW_NUMEL = 1 << 20  # loaded inputs up to this size stay in the cache for previews (video clips do not)


def model_modalities(model_or_config: Any) -> list[str]:
    """The modalities of a model (a model, its config or a :class:`DemoBackend`), in the model's order: the one
    place the demo asks which inputs to offer."""
    config = getattr(model_or_config, "config", model_or_config)
    return list(config.modalities)


@dataclass
class EncodedInput:
    """One upload, loaded and encoded: ``block`` (K + 2, D_llm) is its modality block in the model's dtype and
    device; ``tensor`` the loaded input (CPU, float32) when small enough to draw a preview from, else None."""

    modality: str
    path: str
    options: dict[str, Any]
    block: torch.Tensor
    tensor: torch.Tensor | None


def _file_id(path: "str | os.PathLike") -> tuple[str, int, int]:
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return str(p), st.st_mtime_ns, st.st_size


def clean_options(modality: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop options that are not given (None, empty strings), keep the loader's own names."""
    return {k: v for k, v in (options or {}).items() if v is not None and v != ""}


def input_key(modality: str, path: "str | os.PathLike", options: Mapping[str, Any]) -> tuple | None:
    """The cache key of an upload: its modality, the identity of its file and of every file option, the other
    options; None when a file cannot be stat'ed (the loader then says what is wrong)."""
    spec = modality_definition(modality).loader
    try:
        parts = tuple(sorted((k, _file_id(v) if k in spec.path_options else v) for k, v in options.items()))
        return modality_definition(modality).name, _file_id(path), parts
    except (OSError, TypeError, ValueError):
        return None


def message_text(content: Any) -> str:
    """The text of a chat message's content: a string, or a list of parts (``{"type": "text", "text": ...}``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return str(content.get("text", "")) if content.get("type", "text") == "text" else ""
    if isinstance(content, (list, tuple)):
        return "".join(message_text(c) for c in content)
    return str(content)


def history_from_messages(messages: Iterable[Mapping[str, Any]] | None) -> list[tuple[str, str]]:
    """Chat messages (``{"role": "user" | "assistant", "content": ...}``) -> (question, answer) turns; a question
    without an answer (generation was stopped before the first token) gets an empty answer."""
    turns: list[tuple[str, str]] = []
    question: str | None = None
    for message in messages or ():
        role, text = message.get("role"), message_text(message.get("content")).strip()
        if role == "user":
            if question is not None:
                turns.append((question, ""))
            question = text
        elif role == "assistant" and question is not None:
            turns.append((question, text))
            question = None
    if question is not None:
        turns.append((question, ""))
    return turns


class _RowStop(StoppingCriteria):
    """Ends a row at its stop button or at its own ``max_new_tokens`` (the batch runs to the longest)."""

    def __init__(self, requests: Sequence[Request], prompt_length: int):
        self.requests, self.prompt_length = requests, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs: Any) -> torch.BoolTensor:
        new = input_ids.shape[1] - self.prompt_length
        done = [r.stop.is_set() or new >= r.gen.max_new_tokens for r in self.requests]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class _RowStreamer(BaseStreamer):
    """Receives each step's tokens (B,) from ``generate`` and keeps every row's text; a row is finished at EOS, at
    the separator, at its ``max_new_tokens`` or its stop button, and its answer is decoded as ``generate`` does."""

    def __init__(self, requests: Sequence[Request], decode, eos_id: int, pad_id: int):
        self.requests, self.decode, self.eos, self.pad = list(requests), decode, eos_id, pad_id
        self.ids: list[list[int]] = [[] for _ in self.requests]
        self.done = [False] * len(self.requests)
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate's first call hands over the prompt
            self._prompt_seen = True
            return
        for i, token in enumerate(value.reshape(-1).tolist()):
            if not self.done[i]:
                self._step(i, int(token))

    def _step(self, i: int, token: int) -> None:
        request = self.requests[i]
        if token == self.eos:
            self._finish(i)
            return
        self.ids[i].append(token)
        text = self.decode(self.ids[i])
        if SEPARATOR in text or len(self.ids[i]) >= request.gen.max_new_tokens or request.stop.is_set():
            self._finish(i)
            return
        # hold back what may be the start of the separator, and an incomplete UTF-8 character (shown as U+FFFD
        # until its last byte arrives)
        safe = max(len(text) - len(SEPARATOR) + 1, 0)
        request.piece(text[:safe].rstrip("\ufffd").strip())

    def _finish(self, i: int) -> None:
        self.done[i] = True
        ids = list(self.ids[i])
        while ids and ids[-1] == self.pad:  # as onellm.generation: trailing padding is not part of the answer
            ids.pop()
        self.requests[i].finish(self.decode(ids).split(SEPARATOR)[0].strip())

    def end(self) -> None:
        for i, done in enumerate(self.done):
            if not done:
                self._finish(i)


class DemoBackend:
    """Model + processor + input cache + request batcher (module docstring).

    Args:
        model: a ``OneLLMForConditionalGeneration`` in eval mode.
        processor: its ``OneLLMProcessor``.
        max_batch: most requests per generation batch (the UI's concurrency limit).
        batch_window_s: how long an idle batcher waits for requests arriving together.
        cache_size: encoded uploads kept (least recently used dropped first).
    """

    def __init__(self, model, processor, *, max_batch: int = 4, batch_window_s: float = 0.02, cache_size: int = 32):
        self.model, self.processor = model, processor
        self.config = model.config
        self.device = next(model.parameters()).device
        self.dtype = next(model.upm.parameters()).dtype
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, EncodedInput] = OrderedDict()
        self._encode_lock = threading.Lock()
        self.counts: Counter[str] = Counter()  # "load", "encode", "hit": what encode() did (tests, logs)
        self.batcher = Batcher(self._run_batch, max_batch=max_batch, window_s=batch_window_s)

    @classmethod
    def from_pretrained(cls, model_dir: "str | os.PathLike", device: str = "auto", dtype: str = "auto",
                        **kwargs: Any) -> "DemoBackend":
        """Load a model directory (``--device`` / ``--dtype`` as ``onellm infer``) and its processor."""
        from ..inference import resolve_device, resolve_dtype
        from ..model import OneLLM
        from ..processing import OneLLMProcessor

        dev = resolve_device(device)
        model = OneLLM.from_pretrained(model_dir, device=dev, dtype=resolve_dtype(dtype, dev)).eval()
        return cls(model, OneLLMProcessor.from_pretrained(model_dir), **kwargs)

    @property
    def modalities(self) -> list[str]:
        return model_modalities(self.config)

    def close(self) -> None:
        self.batcher.close()

    # ------------------------------------------------------------------------------------------------
    # Inputs
    def encode(self, modality: str, path: "str | os.PathLike", options: Mapping[str, Any] | None = None
               ) -> EncodedInput:
        """Load and encode one upload, or return the cached encoding of the same file(s).

        Raises:
            InputError: the loader's message (missing, unsupported, corrupt file ...), or a modality this model
                does not have.
        """
        name = modality_definition(modality).name
        if name not in self.config.modalities:
            raise InputError(path, f"this model has no {name} inputs (its modalities: "
                                   f"{', '.join(self.config.modalities)})")
        options = clean_options(name, options)
        key = input_key(name, path, options)
        with self._encode_lock:
            if key is not None and key in self._cache:
                self._cache.move_to_end(key)
                self.counts["hit"] += 1
                return self._cache[key]
            self.counts["load"] += 1
            tensor = self.processor.load_input(name, {"path": str(path), **options})  # InputError on bad input
            self.counts["encode"] += 1
            with torch.no_grad():  # the whole block: tokenizer, CLIP and the UPM run once per upload
                block = self.model.encode_modality(name, tensor[None].to(self.device, dtype=self.dtype))[0]
            entry = EncodedInput(name, str(path), options, block,
                                 tensor if tensor.numel() <= PREVIEW_NUMEL else None)
            if key is not None:
                self._cache[key] = entry
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return entry

    # ------------------------------------------------------------------------------------------------
    # Prompts
    def default_question(self, modalities: Sequence[str]) -> str:
        """The released evaluation prompt of the first input (what a turn with an empty question asks)."""
        return modality_definition(modalities[0]).caption_prompt if modalities else ""

    def build_sample(self, question: str, history: Sequence[tuple[str, str]], inputs: Sequence[EncodedInput],
                     max_new_tokens: int = 0, template: str = "chat"):
        """The packed prompt of a turn; the oldest turns are dropped while prompt + ``max_new_tokens`` would exceed
        ``config.max_seq_len``. ``template="none"``: the raw question without the conversation (``onellm infer
        --template none``: alignment-only models continue it as a caption). Raises ValueError when even the
        question alone is too long."""
        from ..features import CachedBlocks

        if template not in TEMPLATES:
            raise ValueError(f"template must be one of {', '.join(TEMPLATES)}, got {template!r}")
        items = [(e.modality, CachedBlocks(e.block)) for e in inputs]
        history = list(history) if template == "chat" else []
        limit = self.config.max_seq_len
        while True:
            sample = self.processor.prompt_sample(question, items, history=history, template=template)
            if len(sample) + max_new_tokens <= limit or not history:
                break
            history.pop(0)
        if len(sample) > limit:
            raise ValueError(f"the prompt takes {len(sample)} positions ({len(inputs)} input blocks included), more "
                             f"than the model's {limit}; ask a shorter question")
        return sample

    # ------------------------------------------------------------------------------------------------
    # Answers
    def submit(self, question: str, history: Sequence[tuple[str, str]] = (),
               inputs: Sequence["EncodedInput | tuple[str, str, Mapping[str, Any]]"] = (),
               gen: GenerationConfig | None = None, stop: threading.Event | None = None,
               template: str = "chat") -> Request:
        """Queue one turn; read its answer with ``request.stream()``. ``inputs``: encoded inputs or
        (modality, path, options) triples (encoded here, from the cache when possible); ``template`` as
        :meth:`build_sample`."""
        gen = gen or GenerationConfig()
        encoded = [x if isinstance(x, EncodedInput) else self.encode(x[0], x[1], x[2] if len(x) > 2 else None)
                   for x in inputs]
        if not question.strip() and template == "chat":
            question = self.default_question([e.modality for e in encoded])
        if not question.strip() and not encoded:
            raise ValueError("ask a question or give an input")
        sample = self.build_sample(question, history, encoded, gen.max_new_tokens, template)
        request = Request(sample, gen, **({"stop": stop} if stop is not None else {}))
        return self.batcher.submit(request)

    def chat(self, question: str, history: Sequence[tuple[str, str]] = (), inputs: Sequence[Any] = (),
             gen: GenerationConfig | None = None, stop: threading.Event | None = None,
             template: str = "chat") -> Iterator[Update]:
        """Stream a turn's answer: :class:`Update` s with the text so far, the last one ``done``."""
        yield from self.submit(question, history, inputs, gen, stop, template).stream()

    def answer(self, question: str, history: Sequence[tuple[str, str]] = (), inputs: Sequence[Any] = (),
               gen: GenerationConfig | None = None, template: str = "chat") -> str:
        """The final answer of a turn (no streaming)."""
        text = ""
        for update in self.chat(question, history, inputs, gen, template=template):
            text = update.text
        return text

    def _run_batch(self, requests: Sequence[Request]) -> None:
        """One left-padded batch through ``model.generate`` (the batcher's thread)."""
        from ..data.collate import move_batch

        batch = self.processor.collate([r.payload for r in requests], padding_side="left", with_labels=False)
        batch = move_batch(batch, self.device, self.dtype)
        prompt_length = batch["input_ids"].shape[1]
        gen = dataclasses.replace(requests[0].gen, max_new_tokens=max(r.gen.max_new_tokens for r in requests))
        kwargs = hf_generate_kwargs(self.model, gen, self.processor, prompt_length)
        kwargs["stopping_criteria"] = list(kwargs.get("stopping_criteria") or []) + [_RowStop(requests, prompt_length)]
        llm = self.config.llm
        streamer = _RowStreamer(requests, self.processor.decode, llm.eos_token_id, llm.pad_token_id)
        self.model.generate(**{k: v for k, v in batch.items() if k != "labels"}, streamer=streamer, **kwargs)
        streamer.end()
