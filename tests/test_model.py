"""Contract tests of the OneLLM model at the tiny and 7B (meta device) presets."""

import pytest
import torch

from onellm import OneLLM, OneLLMConfig
from onellm.modalities import DEFAULT_MODALITIES
from onellm.model import input_shape, num_tokens
from onellm.model.encoder import encode_tokens, is_batch_first, patch_embed

from helpers import batch_of, random_input, random_sample, tiny_config

ALL = list(DEFAULT_MODALITIES)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = OneLLM(tiny_config()).eval()
    return model


@pytest.fixture(scope="module")
def meta_7b():
    with torch.device("meta"):
        return OneLLM(OneLLMConfig.preset("onellm-7b"))


def test_7b_parameter_counts(meta_7b):
    summary = meta_7b.parameter_summary()
    assert summary["llm"][1] == 6_738_415_616
    assert summary["encoder"][1] == 303_966_208  # ViT-L/14 visual tower
    specific = sum(summary[p][1] for p in ("tokenizers", "upm", "experts"))
    assert specific == 516_246_552  # spec §2.2
    assert summary["experts"][1] == 308_330_496
    assert summary["encoder"][0] == 0  # frozen by default
    block = meta_7b.upm.resample_layers["0"][0]
    assert block.feed_forward.w1.weight.shape == (2816, 1024)
    assert meta_7b.llm.config.num_hidden_layers == 32 and meta_7b.llm.config.intermediate_size == 11008


EXPECTED_7B_TOKENS = {"image": 257, "video": 257, "depth": 257, "normal": 257,
                      "audio": 1213, "point": 1025, "imu": 392, "fmri": 9}


@pytest.mark.parametrize("modality", ALL)
def test_7b_token_counts_on_meta(meta_7b, modality):
    cfg = meta_7b.config
    assert num_tokens(cfg, modality) == EXPECTED_7B_TOKENS[modality]
    x = torch.empty(2, *input_shape(cfg, modality), device="meta")
    if modality == "point":  # FPS needs values; check the tokenizer shapes with the grouping stubbed
        tokens = meta_7b.tokenizers.conv1["point"].conv1(torch.empty(2, 6, 1024, 32, device="meta")).amax(-1)
        tokens = tokens.transpose(1, 2)
    elif modality in ("audio", "imu", "fmri"):
        tokens = meta_7b.tokenizers(modality, x)
    else:
        tokens = patch_embed(meta_7b.encoder, x.reshape(-1, *x.shape[-3:]))
    assert tokens.shape[1] + 1 == EXPECTED_7B_TOKENS[modality]
    assert tokens.shape[2] == 1024
    block = meta_7b.project(modality, torch.empty(2, EXPECTED_7B_TOKENS[modality], 1024, device="meta"))
    assert block.shape == (2, 32, 4096)  # [start, 30 tokens, end] in the LLM space


def test_input_shapes_7b():
    cfg = OneLLMConfig.preset("onellm-7b")
    assert input_shape(cfg, "video") == (15, 3, 224, 224)
    assert input_shape(cfg, "audio") == (1, 128, 1024)
    assert input_shape(cfg, "point") == (8192, 6)
    assert input_shape(cfg, "imu") == (6, 400)
    assert input_shape(cfg, "fmri") == (1, 15724)
    assert input_shape(cfg, "depth") == (2, 3, 224, 224)


def test_imu_stride_strides_the_conv_over_time():
    cfg = OneLLMConfig.preset("quickstart")
    assert cfg.inputs.imu.stride == 5 and num_tokens(cfg, "imu") == (400 - 10) // 5 + 1 + 1  # 79 + CLS
    torch.manual_seed(0)
    model = OneLLM(cfg).eval()
    x = torch.randn(2, 6, 400)
    with torch.no_grad():
        tokens = model.tokenizers("imu", x)  # (2, 79, D): token t sees samples 5t .. 5t + 9
        conv = model.tokenizers.conv1["imu"]
        manual = torch.einsum("dck,bck->bd", conv.weight, x[:, :, 15:25])  # token 3
    assert tokens.shape == (2, 79, cfg.dim)
    torch.testing.assert_close(tokens[:, 3], manual)
    assert model.encode_clip("imu", x).shape == (2, 80, cfg.dim)


@pytest.mark.parametrize("modality", ALL)
def test_tiny_single_modality_forward(tiny, modality):
    g = torch.Generator().manual_seed(1)
    batch = batch_of([random_sample(tiny, [modality], 12, g), random_sample(tiny, [modality], 7, g)])
    out = tiny(**batch)
    B, S = batch["input_ids"].shape
    assert out.logits.shape == (B, S, tiny.config.llm.vocab_size)
    assert S == 1 + tiny.block_length + 12
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    assert out.num_tokens == int((batch["labels"][:, 1:] != -100).sum())


def test_mixed_batch_places_every_block_in_reading_order(tiny):
    g = torch.Generator().manual_seed(2)
    samples = [random_sample(tiny, [m], 5 + i, g) for i, m in enumerate(ALL)]
    samples.append(random_sample(tiny, ["video", "audio"], 6, g))  # one sample, two inputs
    samples.append(random_sample(tiny, [], 9, g))  # text only
    batch = batch_of(samples)
    with torch.no_grad():
        embeds = tiny.embed_inputs(batch["input_ids"], {k: v for k, v in batch.items() if k.endswith("_values")})
        K2 = tiny.block_length
        for i, s in enumerate(samples):
            for j, (m, x) in enumerate(s.inputs):
                expected = tiny.encode_modality(m, x[None])[0]  # (K+2, D)
                got = embeds[i, 1 + j * K2: 1 + (j + 1) * K2]
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
            text_pos = (batch["input_ids"][i] < tiny.config.llm.vocab_size) & batch["attention_mask"][i].bool()
            torch.testing.assert_close(embeds[i][text_pos], tiny.embed_text(batch["input_ids"][i][text_pos]))
    out = tiny(**batch)
    assert torch.isfinite(out.loss)


def test_start_and_end_tags_frame_each_block(tiny):
    x = random_input(tiny.config, "audio")[None]
    block = tiny.encode_modality("audio", x)
    assert block.shape == (1, tiny.config.upm.num_tokens + 2, tiny.config.llm.hidden_size)
    torch.testing.assert_close(block[0, 0], tiny.upm.start_tag["audio"][0, 0])
    torch.testing.assert_close(block[0, -1], tiny.upm.end_tag["audio"][0, 0])


@pytest.mark.parametrize("modality", ALL)
def test_encoder_batch_equals_one_by_one(tiny, modality):
    g = torch.Generator().manual_seed(3)
    xs = torch.stack([random_input(tiny.config, modality, g) for _ in range(3)])
    with torch.no_grad():
        batched = tiny.encode_clip(modality, xs)
        single = torch.cat([tiny.encode_clip(modality, xs[i: i + 1]) for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
        blocks = tiny.encode_modality(modality, xs)
        blocks_single = torch.cat([tiny.encode_modality(modality, xs[i: i + 1]) for i in range(3)])
        torch.testing.assert_close(blocks, blocks_single, atol=1e-5, rtol=1e-5)
    # and the samples really differ (a batch-axis mix-up would make them alike)
    assert (batched[0] - batched[1]).abs().max() > 1e-3


def test_encoder_respects_open_clip_layout(tiny):
    """Running CLIP on a batch must equal open_clip's own forward on each image, whatever its layout."""
    visual = tiny.encoder
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = encode_tokens(visual, patch_embed(visual, images), visual.positional_embedding)  # (3, 17, D)
        visual.output_tokens = True
        pooled, tokens = visual(images)
        visual.output_tokens = False
    # open_clip pools the CLS token after ln_post and projects it; its patch tokens are ln_post'ed as well
    torch.testing.assert_close(ours[:, 1:], tokens, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[:, 0] @ visual.proj, pooled, atol=1e-5, rtol=1e-5)
    assert is_batch_first(visual.transformer)  # open_clip 3.x


def test_router_weights_are_a_distribution(tiny):
    z = torch.randn(4, tiny.config.upm.num_tokens, tiny.config.dim)
    for m in ALL:
        w = tiny.upm.router_weights(m, z)
        assert w.shape == (4, tiny.config.upm.num_tokens, tiny.config.upm.num_experts)
        assert (w > 0).all()
        torch.testing.assert_close(w.sum(-1), torch.ones(4, tiny.config.upm.num_tokens))


def test_upm_output_is_router_weighted_sum_of_experts(tiny):
    """Recompute the UPM by hand (each expert on the full sequence, weights from the router) and compare."""
    m = "image"
    feats = torch.randn(2, 17, tiny.config.dim)
    upm = tiny.upm
    with torch.no_grad():
        K = upm.num_tokens
        z = torch.cat([upm.resample_tokens["image"].expand(2, -1, -1), upm.clip_proj1["image"](feats)], 1)
        w = torch.sigmoid(upm.routers["image"](z))
        w = w / w.sum(-1, keepdim=True)
        total = 0
        for e, layers in enumerate(upm.resample_layers.values()):
            h = z
            for block in layers:  # full-length blocks, no query truncation
                h = block(h)
            total = total + h[:, :K] * w[:, :K, e, None]
        expected = upm.clip_proj2["image"](total)
        torch.testing.assert_close(upm(m, feats), expected, atol=1e-5, rtol=1e-5)


def test_experts_are_bidirectional(tiny):
    """Changing the last token changes the first token's output: attention is not causal."""
    block = tiny.upm.resample_layers["0"][0]
    x = torch.randn(1, 6, tiny.config.dim)
    y = x.clone()
    y[0, -1] += 1.0
    with torch.no_grad():
        assert (block(x)[0, 0] - block(y)[0, 0]).abs().max() > 1e-4


def test_gradients_reach_exactly_the_trainable_parts():
    torch.manual_seed(0)
    model = OneLLM(tiny_config())
    model.set_trainable(llm=False, upm=["audio"], tokenizers=["audio"])
    g = torch.Generator().manual_seed(4)
    batch = batch_of([random_sample(model, ["audio"], 8, g), random_sample(model, ["image"], 8, g)])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(**batch).loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == trainable  # every trainable parameter used by the batch gets a gradient ...
    assert all(n.startswith(("upm.resample_layers", "tokenizers.conv1.audio", "tokenizers.positional_embedding.audio"))
               or ".audio" in n for n in trainable)
    assert not any(n.startswith(("llm.", "encoder.")) for n in trainable)  # ... and nothing else has one
    assert any(n.startswith("upm.clip_proj2.audio") for n in trainable)
    assert not any("image" in n for n in trainable)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None and torch.equal(p, before[n])


def test_frozen_image_path_runs_without_autograd(tiny):
    tiny.set_trainable()
    x = random_input(tiny.config, "image")[None]
    with torch.enable_grad():
        assert not tiny.encode_clip("image", x).requires_grad  # CLIP frozen: no graph kept
        assert tiny.encode_clip("audio", random_input(tiny.config, "audio")[None]).requires_grad


def test_mixed_batch_loss_equals_sample_by_sample(tiny):
    g = torch.Generator().manual_seed(5)
    samples = [random_sample(tiny, [m], 4 + 2 * i, g) for i, m in enumerate(ALL)]
    with torch.no_grad():
        out = tiny(**batch_of(samples))
        sums, counts = 0.0, 0
        for s in samples:
            o = tiny(**batch_of([s]))
            sums += o.loss.item() * o.num_tokens
            counts += o.num_tokens
        assert out.num_tokens == counts
        assert abs(out.loss.item() - sums / counts) < 1e-5
        # the loss without materialising logits is the same
        assert abs(tiny(**batch_of(samples), return_logits=False).loss.item() - out.loss.item()) < 1e-6


def test_loss_matches_reference_cross_entropy(tiny):
    g = torch.Generator().manual_seed(6)
    batch = batch_of([random_sample(tiny, ["fmri"], 10, g)])
    with torch.no_grad():
        out = tiny(**batch)
        logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
        ref = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                ignore_index=-100)
    torch.testing.assert_close(out.loss, ref)


def test_bad_input_shape_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="audio input must have shape"):
        tiny.encode_modality("audio", torch.randn(1, 1, 10, 10))
