"""Generation through HF's GenerationMixin: batch invariance, cache == recomputation, equality with the previous
decoding path (the decoder's own generate on inputs_embeds), stop strings, the legacy KV offset, streaming."""
import threading

import pytest
import torch

from onellm.constants import IGNORE_INDEX
from onellm.data.collate import collate_packed
from onellm.generation import GenerationConfig, generate, hf_generate_kwargs, stream_generate
from onellm.processing import PackedSample

from helpers import processor_for, request_sample, tiny_model_with_tokenizer

QUESTIONS = ["What is it?", "Describe the object in detail please.", "Colour?", "What shape is the thing here?"]


@pytest.fixture(scope="module")
def model(text_tokenizer):
    return tiny_model_with_tokenizer(text_tokenizer)


@pytest.fixture(scope="module")
def processor(model, text_tokenizer):
    return processor_for(model, text_tokenizer)


def mixed_requests(processor):
    g = torch.Generator().manual_seed(0)
    mods = [["image"], ["audio"], ["point"], [], ["video", "audio"],
            ["fmri"], ["imu"], ["depth"]]
    return [request_sample(processor, m, QUESTIONS[i % 4], g, id=str(i)) for i, m in enumerate(mods)]


def left(samples):
    return collate_packed(samples, padding_side="left", with_labels=False)


def extended(s, toks):
    """The request followed by generated tokens, as one sequence."""
    return PackedSample(s.input_ids + toks, [IGNORE_INDEX] * (len(s) + len(toks)), s.inputs)


def test_greedy_answers_do_not_depend_on_batch_size_or_neighbours(model, processor):
    samples = mixed_requests(processor)
    gen = GenerationConfig(max_new_tokens=12, temperature=0, stop_strings=())
    whole = generate(model, processor, left(samples), gen).token_ids
    singles = [generate(model, processor, left([s]), gen).token_ids[0] for s in samples]
    assert whole == singles
    halves = (generate(model, processor, left(samples[:3]), gen).token_ids
              + generate(model, processor, left(samples[3:]), gen).token_ids)
    assert halves == singles
    assert len({tuple(t) for t in singles}) > 1  # the samples do differ


def test_generation_mixin_equals_the_decoders_generate_on_embeddings(model, processor):
    """The previous implementation generated with the LLaMA's own ``generate(inputs_embeds=...)``; HF's
    GenerationMixin on the placeholder ids must give the same tokens and the same per-step logits."""
    samples = mixed_requests(processor)
    batch = left(samples)
    gen = GenerationConfig(max_new_tokens=10, temperature=0, stop_strings=())
    ours = generate(model, processor, batch, gen, output_logits=True)
    with torch.no_grad():
        embeds = model.embed_inputs(batch["input_ids"], {k: v for k, v in batch.items() if k.endswith("_values")})
        kwargs = {k: v for k, v in hf_generate_kwargs(model, gen).items() if k != "stopping_criteria"}
        ref = model.llm.generate(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                 return_dict_in_generate=True, output_logits=True, **kwargs)
    assert [row[:len(t)] for row, t in zip(ref.sequences.tolist(), ours.token_ids)] == ours.token_ids
    for step in range(len(ours.logits)):
        torch.testing.assert_close(ours.logits[step], ref.logits[step], atol=1e-5, rtol=1e-5)


def test_incremental_decoding_equals_full_recomputation(model, processor):
    samples = mixed_requests(processor)[:4]
    batch = left(samples)
    gen = GenerationConfig(max_new_tokens=8, temperature=0, stop_strings=())
    out = generate(model, processor, batch, gen, output_logits=True)
    with torch.no_grad():
        for i, s in enumerate(samples):
            toks = out.token_ids[i]
            logits = model(**collate_packed([extended(s, toks)], with_labels=False)).logits[0]  # (S + T, V)
            for step in range(len(toks)):
                ref = logits[len(s) - 1 + step]
                torch.testing.assert_close(out.logits[step][i], ref, atol=2e-4, rtol=1e-4)


def test_legacy_kv_offset_reproduces_the_released_decoding(text_tokenizer):
    model = tiny_model_with_tokenizer(text_tokenizer, **{"legacy_kv_offset": True})
    processor = processor_for(model, text_tokenizer)
    g = torch.Generator().manual_seed(1)
    s = request_sample(processor, ["image"], "What is it?", g)
    gen = GenerationConfig(max_new_tokens=6, temperature=0, stop_strings=())
    legacy = generate(model, processor, left([s]), gen, output_logits=True)
    model.config.legacy_kv_offset = False
    correct = generate(model, processor, left([s]), gen, output_logits=True)
    torch.testing.assert_close(legacy.logits[0], correct.logits[0])  # the prefill is right in both
    assert not torch.allclose(legacy.logits[1], correct.logits[1], atol=1e-3)  # then the bug shows
    # the released decoding == a correct decoding of the prompt without its last two positions
    toks = legacy.token_ids[0]
    with torch.no_grad():
        for step in range(1, len(toks)):
            seq = PackedSample(s.input_ids[:-2] + toks[:step], [IGNORE_INDEX] * (len(s) - 2 + step), s.inputs)
            ref = model(**collate_packed([seq], with_labels=False)).logits
            torch.testing.assert_close(legacy.logits[step][0], ref[0, -1], atol=2e-4, rtol=1e-4)
    # text-only requests are unaffected (the original only shifted after a modality prefix)
    t = request_sample(processor, [], "What is it?", g)
    model.config.legacy_kv_offset = True
    a = generate(model, processor, left([t]), gen).token_ids
    model.config.legacy_kv_offset = False
    assert a == generate(model, processor, left([t]), gen).token_ids


class ForceTokens:
    """Forward hook on the LM head that makes the model emit a fixed token sequence."""

    def __init__(self, ids):
        self.ids, self.step = ids, 0

    def __call__(self, module, inputs, output):
        out = output.clone()
        out[:, -1, self.ids[min(self.step, len(self.ids) - 1)]] += 1e4
        self.step += 1
        return out


def test_stops_at_separator_and_returns_only_the_answer(model, processor, text_tokenizer):
    g = torch.Generator().manual_seed(2)
    s = request_sample(processor, ["audio"], "What is it?", g)
    forced = text_tokenizer.encode("red.\n### Human: and then some more words")
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(forced))
    try:
        out = generate(model, processor, left([s]), GenerationConfig(max_new_tokens=40, temperature=0))
    finally:
        hook.remove()
    assert out.texts == ["red."]
    assert len(out.token_ids[0]) < len(forced)  # stopped at "###", did not run to max_new_tokens
    assert "###" in out.raw_texts[0]


def test_eos_ends_generation(model, processor, text_tokenizer):
    g = torch.Generator().manual_seed(3)
    s = request_sample(processor, ["imu"], "What is it?", g)
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(text_tokenizer.encode("walking") + [2]))
    try:
        out = generate(model, processor, left([s]), GenerationConfig(max_new_tokens=30, temperature=0))
    finally:
        hook.remove()
    assert out.texts == ["walking"] and out.token_ids[0] == text_tokenizer.encode("walking")


def test_sampling_is_seeded(model, processor):
    samples = mixed_requests(processor)[:3]
    gen = GenerationConfig(max_new_tokens=8, temperature=1.0, top_p=0.9, stop_strings=())
    torch.manual_seed(5)
    a = generate(model, processor, left(samples), gen).token_ids
    torch.manual_seed(5)
    assert generate(model, processor, left(samples), gen).token_ids == a


def test_stream_generate_yields_the_same_answer(model, processor, text_tokenizer):
    g = torch.Generator().manual_seed(4)
    s = request_sample(processor, ["point"], "What is it?", g)
    forced = text_tokenizer.encode("a green cone\n### Human: more")
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(forced))
    try:
        pieces = list(stream_generate(model, processor, left([s]),
                                      GenerationConfig(max_new_tokens=30, temperature=0)))
    finally:
        hook.remove()
    assert "".join(pieces).strip() == "a green cone"
    assert len(pieces) >= 2  # streamed, not one final chunk


@pytest.mark.parametrize("legacy", [False, True])
def test_stream_stops_when_the_event_is_set(model, processor, text_tokenizer, legacy):
    """A stop button / Ctrl-C: setting the event ends the generation after the current token (both decoders)."""
    g = torch.Generator().manual_seed(6)
    s = request_sample(processor, ["image"], "What is it?", g)
    stop = threading.Event()
    forced = text_tokenizer.encode("one two three four five six seven eight nine ten eleven twelve")
    hook = model.llm.lm_head.register_forward_hook(ForceTokens(forced))
    model.config.legacy_kv_offset = legacy
    try:
        pieces = []
        for piece in stream_generate(model, processor, left([s]), GenerationConfig(max_new_tokens=60, temperature=0),
                                     stop_event=stop):
            pieces.append(piece)
            stop.set()
    finally:
        hook.remove()
        model.config.legacy_kv_offset = False
    text = "".join(pieces)
    assert text.strip() and len(text.split()) < 6  # stopped a token or two after the event, not at 12 words


def test_generation_rejects_right_padding(model, processor):
    samples = mixed_requests(processor)[:2]
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, processor, collate_packed(samples, padding_side="right", with_labels=False))
