"""Decode a shard member from its bytes in memory (no temporary file) into exactly the tensor the modality's file
loader gives for the same file, train-time augmentations included (same RNG draws in the same order).

The registry's loaders read paths and named binary file objects alike (``onellm.data.loaders.sources``: every
decoding library they use takes both), so a member (:class:`Member`) goes to the modality's own loader, path options
(the RGB image of a map, IMU timestamps) as members too. A modality registered by a plugin whose loader needs a real
path fails with a clear error; ``register_bytes_decoder`` gives it a decoder of its own.

``tests/test_shards.py`` holds every modality of the synthetic world equal, bit for bit, to its file loader.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import InputError
from .members import Member

_DECODERS: dict[Callable, Callable] = {}


def register_bytes_decoder(load: Callable, decoder: Callable) -> None:
    """Decode inputs of every modality whose ``LoaderSpec.load`` is ``load`` with
    ``decoder(member, *, train, config, **options) -> tensor`` (path options arrive as :class:`Member`)."""
    _DECODERS[load] = decoder


def decode_input(modality: str, member: Member, options: dict[str, Any], *, train: bool, config) -> torch.Tensor:
    """One input from member bytes -> the model's float32 input tensor; :class:`InputError` naming the member."""
    from ...modalities import get

    definition = get(modality)
    spec = definition.loader
    if member.suffix.lower() not in spec.extensions:
        raise InputError(member, f"unsupported file extension {member.suffix!r} for {definition.name} inputs")
    if member.nbytes == 0:
        raise InputError(member, "empty member (0 bytes)")
    decoder = _DECODERS.get(spec.load, spec.load)
    member.seek(0)
    for value in options.values():
        if isinstance(value, Member):
            value.seek(0)
    try:
        tensor = decoder(member, train=train, config=config, **options)
    except InputError:
        raise
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(member, f"cannot decode {definition.name} input from its bytes: {exc}") from exc
    return tensor.float()


__all__ = ["decode_input", "register_bytes_decoder"]
