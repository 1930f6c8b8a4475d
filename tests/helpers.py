"""Shared builders for tests: tiny models and batches made in memory."""
from __future__ import annotations

import torch

from onellm import Modality, OneLLM, OneLLMConfig
from onellm.data.collate import collate_packed, pack_sample
from onellm.model import input_shape


def tiny_config(**overrides) -> OneLLMConfig:
    return OneLLMConfig.preset("tiny", **overrides)


def random_input(config: OneLLMConfig, modality: Modality, generator: torch.Generator | None = None) -> torch.Tensor:
    shape = input_shape(config, Modality.parse(modality))
    if modality is Modality.POINT:
        return torch.rand(shape, generator=generator)
    return torch.randn(shape, generator=generator)


def random_sample(model: OneLLM, inputs: list[Modality], text_len: int, generator: torch.Generator, id=None):
    """A packed sample: [bos, blocks..., text] with the second half of the text supervised."""
    vocab = model.config.llm.vocab_size
    ids = [model.config.llm.bos_token_id] + torch.randint(3, vocab, (text_len,), generator=generator).tolist()
    labels = [-100] * (1 + text_len // 2) + ids[1 + text_len // 2:]
    xs = [(m, random_input(model.config, m, generator)) for m in inputs]
    return pack_sample(ids, labels, xs, model.block_length, id=id)


def batch_of(samples, **kw):
    return collate_packed(samples, **kw)
