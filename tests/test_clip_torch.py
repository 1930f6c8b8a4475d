"""The plain-torch CLIP tower and the LLM-free encoder of onellm.vllm against open_clip and the library's model."""
import dataclasses

import pytest
import torch

from helpers import random_input, tiny_config
from onellm.config import OneLLMConfig
from onellm.model import OneLLM
from onellm.model.encoder import build_clip_visual, encode_tokens, patch_embed
from onellm.vllm.clip import build_clip_visual_torch
from onellm.vllm.encoder import block_length, build_encoder, encoder_state_names, model_modalities, placeholder_ids


def _towers(vision):
    torch.manual_seed(7)
    ref = build_clip_visual(vision).eval()
    ours = build_clip_visual_torch(vision).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)  # same names and shapes, nothing missing or extra
    return ref, ours


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("quick_gelu", [True, False])
def test_tower_equals_open_clip(preset, quick_gelu):
    vision = dataclasses.replace(OneLLMConfig.preset(preset).vision, quick_gelu=quick_gelu)
    ref, ours = _towers(vision)
    assert sorted(ref.state_dict()) == sorted(ours.state_dict())
    assert ours.transformer.batch_first is True
    g = torch.Generator().manual_seed(1)
    images = torch.randn(3, 3, vision.image_size, vision.image_size, generator=g)
    with torch.no_grad():
        want = encode_tokens(ref, patch_embed(ref, images), ref.positional_embedding)
        got = encode_tokens(ours, patch_embed(ours, images), ours.positional_embedding)
        assert got.shape == (3, vision.num_patches + 1, vision.width)
        assert (got - want).abs().max().item() <= 1e-5
        assert torch.equal(ours(images), got)  # its own forward is the same all-token path
        # a modality tokenizer's tokens with its own positional embedding (another sequence length)
        tokens = torch.randn(2, 37, vision.width, generator=g)
        pos = torch.randn(38, vision.width, generator=g) * 0.02
        diff = (encode_tokens(ours, tokens, pos) - encode_tokens(ref, tokens, pos)).abs().max().item()
        assert diff <= 1e-5


def test_tower_bf16_matches_open_clip_bf16():
    vision = OneLLMConfig.preset("tiny").vision
    ref, ours = _towers(vision)
    ref, ours = ref.to(torch.bfloat16), ours.to(torch.bfloat16)
    images = torch.randn(2, 3, vision.image_size, vision.image_size)
    with torch.no_grad():
        want = encode_tokens(ref, patch_embed(ref, images), ref.positional_embedding)
        got = encode_tokens(ours, patch_embed(ours, images), ours.positional_embedding)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)


def test_encoder_blocks_equal_encode_modality_for_every_modality():
    config = tiny_config()
    torch.manual_seed(3)
    model = OneLLM(config).eval()
    enc = build_encoder(config).eval()
    state = model.state_dict()
    names = encoder_state_names(list(state))
    assert set(names) == set(enc.state_dict())  # exactly the model's non-LLM names
    enc.load_state_dict({n: state[n] for n in names}, strict=True)
    assert not any(p.requires_grad for p in enc.parameters())
    g = torch.Generator().manual_seed(5)
    assert model_modalities(config) == ["image", "video", "audio", "point", "depth", "normal", "imu", "fmri"]
    for m in model_modalities(config):
        x = torch.stack([random_input(config, m, g) for _ in range(3)])  # (3, *input_shape)
        with torch.no_grad():
            want = model.encode_modality(m, x)
            got = enc.encode(m, x)
        assert got.shape == (3, block_length(config), config.llm.hidden_size)
        assert (got - want).abs().max().item() <= 1e-5, m
    # video with another frame count, and one item at a time equals the batch
    video = torch.randn(2, 4, 3, config.vision.image_size, config.vision.image_size, generator=g)
    with torch.no_grad():
        assert (enc.encode("video", video) - model.encode_modality("video", video)).abs().max().item() <= 1e-5
        one_by_one = torch.cat([enc.encode("video", video[i:i + 1]) for i in range(2)])
        assert (one_by_one - enc.encode("video", video)).abs().max().item() <= 1e-5


def test_placeholder_ids_follow_the_contract():
    config = tiny_config()
    ids = placeholder_ids(config)
    vocab = config.llm.vocab_size
    assert list(ids) == model_modalities(config)
    assert list(ids.values()) == list(range(vocab, vocab + len(ids)))
    assert block_length(config) == config.upm.num_tokens + 2
