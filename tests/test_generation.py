"""Generation: batch invariance, cache == recomputation, stop strings, the legacy KV offset, streaming."""
import pytest
import torch

from onellm.data.collate import collate_packed
from onellm.generation import GenerationConfig, generate, stream_generate

from helpers import request_sample, tiny_model_with_tokenizer

QUESTIONS = ["What is it?", "Describe the object in detail please.", "Colour?", "What shape is the thing here?"]


@pytest.fixture(scope="module")
def model(text_tokenizer):
    return tiny_model_with_tokenizer(text_tokenizer)


def mixed_requests(model):
    g = torch.Generator().manual_seed(0)
    mods = [["image"], ["audio"], ["point"], [], ["video", "audio"],
            ["fmri"], ["imu"], ["depth"]]
    return [request_sample(model, m, QUESTIONS[i % 4], g, id=str(i)) for i, m in enumerate(mods)]


def left(samples):
    return collate_packed(samples, padding_side="left", with_labels=False)


def test_greedy_answers_do_not_depend_on_batch_size_or_neighbours(model):
    samples = mixed_requests(model)
    gen = GenerationConfig(max_new_tokens=12, temperature=0, stop_strings=())
    whole = generate(model, left(samples), gen).token_ids
    singles = [generate(model, left([s]), gen).token_ids[0] for s in samples]
    assert whole == singles
    halves = generate(model, left(samples[:3]), gen).token_ids + generate(model, left(samples[3:]), gen).token_ids
    assert halves == singles
    assert len({tuple(t) for t in singles}) > 1  # the samples do differ


def test_incremental_decoding_equals_full_recomputation(model):
    samples = mixed_requests(model)[:4]
    batch = left(samples)
    gen = GenerationConfig(max_new_tokens=8, temperature=0, stop_strings=())
    out = generate(model, batch, gen, output_logits=True)
    with torch.no_grad():
        for i, s in enumerate(samples):
            toks = out.token_ids[i]
            full = collate_packed([type(s)(s.input_ids + toks, [-100] * (len(s) + len(toks)),
                                           s.modality_mask + [False] * len(toks), s.inputs)], with_labels=False)
            logits = model(full).logits[0]  # (S + T, V)
            for step in range(len(toks)):
                ref = logits[len(s) - 1 + step]
                torch.testing.assert_close(out.logits[step][i], ref, atol=2e-4, rtol=1e-4)


def test_legacy_kv_offset_reproduces_the_released_decoding(text_tokenizer):
    model = tiny_model_with_tokenizer(text_tokenizer, **{"legacy_kv_offset": True})
    g = torch.Generator().manual_seed(1)
    s = request_sample(model, ["image"], "What is it?", g)
    gen = GenerationConfig(max_new_tokens=6, temperature=0, stop_strings=())
    legacy = generate(model, left([s]), gen, output_logits=True)
    model.config.legacy_kv_offset = False
    correct = generate(model, left([s]), gen, output_logits=True)
    torch.testing.assert_close(legacy.logits[0], correct.logits[0])  # the prefill is right in both
    assert not torch.allclose(legacy.logits[1], correct.logits[1], atol=1e-3)  # then the bug shows
    # the released decoding == a correct decoding of the prompt without its last two positions
    toks = legacy.token_ids[0]
    with torch.no_grad():
        for step in range(1, len(toks)):
            seq = s.input_ids[:-2] + toks[:step]
            mm = s.modality_mask[:-2] + [False] * step
            ref = model(collate_packed([type(s)(seq, [-100] * len(seq), mm, s.inputs)], with_labels=False)).logits
            torch.testing.assert_close(legacy.logits[step][0], ref[0, -1], atol=2e-4, rtol=1e-4)
    # text-only requests are unaffected (the original only shifted after a modality prefix)
    t = request_sample(model, [], "What is it?", g)
    model.config.legacy_kv_offset = True
    a = generate(model, left([t]), gen).token_ids
    model.config.legacy_kv_offset = False
    assert a == generate(model, left([t]), gen).token_ids


class ForceTokens:
    """Forward hook on the LM head that makes the model emit a fixed token sequence."""

    def __init__(self, ids):
        self.ids, self.step = ids, 0

    def __call__(self, module, inputs, output):
        out = output.clone()
        out[:, -1, self.ids[min(self.step, len(self.ids) - 1)]] += 1e4
        self.step += 1
        return out


def test_stops_at_separator_and_returns_only_the_answer(model, text_tokenizer):
    g = torch.Generator().manual_seed(2)
    s = request_sample(model, ["audio"], "What is it?", g)
    forced = text_tokenizer.encode("red.\n### Human: and then some more words")
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(forced))
    try:
        out = generate(model, left([s]), GenerationConfig(max_new_tokens=40, temperature=0))
    finally:
        hook.remove()
    assert out.texts == ["red."]
    assert len(out.token_ids[0]) < len(forced)  # stopped at "###", did not run to max_new_tokens
    assert "###" in out.raw_texts[0]


def test_eos_ends_generation(model, text_tokenizer):
    g = torch.Generator().manual_seed(3)
    s = request_sample(model, ["imu"], "What is it?", g)
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(text_tokenizer.encode("walking") + [2]))
    try:
        out = generate(model, left([s]), GenerationConfig(max_new_tokens=30, temperature=0))
    finally:
        hook.remove()
    assert out.texts == ["walking"] and out.token_ids[0] == text_tokenizer.encode("walking")


def test_sampling_is_seeded(model):
    samples = mixed_requests(model)[:3]
    gen = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, stop_strings=())
    torch.manual_seed(5)
    a = generate(model, left(samples), gen).token_ids
    torch.manual_seed(5)
    assert generate(model, left(samples), gen).token_ids == a


def test_stream_generate_yields_the_same_answer(model, text_tokenizer):
    g = torch.Generator().manual_seed(4)
    s = request_sample(model, ["point"], "What is it?", g)
    forced = text_tokenizer.encode("a green cone\n### Human: more")
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(forced))
    try:
        pieces = list(stream_generate(model, left([s]), GenerationConfig(max_new_tokens=30, temperature=0)))
    finally:
        hook.remove()
    assert "".join(pieces).strip() == "a green cone"
    assert len(pieces) >= 2  # streamed, not one final chunk


def test_generation_rejects_right_padding(model):
    samples = mixed_requests(model)[:2]
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, collate_packed(samples, padding_side="right", with_labels=False))
