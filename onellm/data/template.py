"""The conversation template and label masking (spec §3.8).

Training (and, by default, inference) uses the original training layout::

    {system}\n\n### Human: {q1}\n### Assistant: {a1}\n### Human: {q2}\n### Assistant: {a2}\n###</s>

Only each answer and its trailing separator (``"{a}\n###"``) are supervised, plus the final EOS so generation
learns to stop. ``legacy=True`` gives the released inference prompt ``...\n\n###Human: {q}\n###Assistant:``
(no spaces; the original's train/inference mismatch), needed for parity with the released checkpoint.

Alignment (pretraining) data has no template: ``[bos] caption [eos]``, all of it supervised.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .text import TextTokenizer

SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the human's questions.")
SEPARATOR = "###"


@dataclass(frozen=True)
class Segment:
    text: str
    supervised: bool


def conversation_segments(turns: Sequence[tuple[str, str | None]], legacy: bool = False) -> list[Segment]:
    """Segments of a conversation; the last answer may be None (an inference prompt ending in "Assistant:").

    Every segment but the first starts where the full string has a space, so encoding segments one by one gives
    the ids of the whole string. ``legacy`` (inference only) is the released prompt, one unsupervised segment.
    """
    if not turns:
        raise ValueError("a conversation needs at least one human turn")
    if any(a is None for _, a in turns[:-1]):
        raise ValueError("only the last turn may lack an answer")
    if legacy:
        text = f"{SYSTEM}\n\n{SEPARATOR}"
        for question, answer in turns:
            text += f"Human: {question.strip()}\n{SEPARATOR}Assistant:"
            if answer is not None:
                text += f" {answer.strip()}\n{SEPARATOR}"
        return [Segment(text, False)]
    segments: list[Segment] = []
    for i, (question, answer) in enumerate(turns):
        prefix = f"{SYSTEM}\n\n### Human: " if i == 0 else "Human: "
        segments.append(Segment(f"{prefix}{question.strip()}\n### Assistant:", False))
        if answer is not None:
            segments.append(Segment(f"{answer.strip()}\n{SEPARATOR}", True))
    return segments


def encode_segments(tokenizer: TextTokenizer, segments: Sequence[Segment], bos: bool = True,
                    eos: bool = False) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 where not supervised); EOS, when added, is supervised."""
    ids: list[int] = [tokenizer.bos_id] if bos else []
    labels: list[int] = [-100] if bos else []
    for seg in segments:
        piece = tokenizer.encode(seg.text)
        ids += piece
        labels += piece if seg.supervised else [-100] * len(piece)
    if eos:
        ids.append(tokenizer.eos_id)
        labels.append(tokenizer.eos_id)
    return ids, labels


def conversation_to_turns(conversations: Sequence[dict]) -> list[tuple[str, str | None]]:
    """LLaVA-style ``[{"from": "human", "value": q}, {"from": "gpt", "value": a}, ...]`` -> (q, a) pairs.

    ``<image>`` placeholders are removed (the modality blocks always follow BOS, as in the original).
    """
    turns: list[tuple[str, str | None]] = []
    for i in range(0, len(conversations), 2):
        q = conversations[i]["value"].replace("<image>", "").strip()
        a = conversations[i + 1]["value"] if i + 1 < len(conversations) else None
        turns.append((q, a))
    return turns


def encode_conversation(tokenizer: TextTokenizer, conversations: Sequence[dict]) -> tuple[list[int], list[int]]:
    """Training ids/labels of a conversation: answers + separators + final EOS supervised."""
    turns = conversation_to_turns(conversations)
    complete = turns[-1][1] is not None
    return encode_segments(tokenizer, conversation_segments(turns), bos=True, eos=complete)


def encode_prompt(tokenizer: TextTokenizer, question: str, history: Sequence[tuple[str, str]] = (),
                  legacy: bool = False) -> list[int]:
    """Inference prompt ids ending in "Assistant:" (with BOS, without EOS)."""
    turns = [*history, (question, None)]
    ids, _ = encode_segments(tokenizer, conversation_segments(turns, legacy), bos=True, eos=False)
    return ids


def encode_caption(tokenizer: TextTokenizer, caption: str) -> tuple[list[int], list[int]]:
    """Alignment ids/labels: ``[bos] caption [eos]`` with caption and EOS supervised."""
    ids = [tokenizer.bos_id] + tokenizer.encode(caption.strip()) + [tokenizer.eos_id]
    return ids, [-100] + ids[1:]


def extract_answer(text: str) -> str:
    """The answer part of generated text: up to the first separator, stripped."""
    return text.split(SEPARATOR)[0].strip()
