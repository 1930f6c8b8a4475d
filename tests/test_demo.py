"""``onellm demo``: the backend (encode-once cache, prompts, streaming, stop, batching, errors), the request batcher,
previews, examples and the gradio app's handlers. The browser end-to-end tests are in test_demo_browser.py."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from demo_support import require_demo_deps, world_inputs
from onellm.data.errors import InputError
from onellm.demo.backend import DemoBackend, history_from_messages, input_key, message_text, model_modalities
from onellm.demo.batcher import Batcher, Request, batch_key
from onellm.generation import GenerationConfig, generate

GREEDY = GenerationConfig(max_new_tokens=12, temperature=0)


# ---------------------------------------------------------------------------------------------------------
# Fixtures
@pytest.fixture(scope="module")
def world(tmp_path_factory, model_dir):
    """The synthetic world at the tiny model's input geometry (2 samples per modality)."""
    from onellm.config import OneLLMConfig
    from onellm.data.synth import generate_world

    config = OneLLMConfig.from_pretrained(str(model_dir))
    out = tmp_path_factory.mktemp("demo-world")
    generate_world(out, per_modality=2, seed=5, split="demo", config=config)
    return out / "demo"


@pytest.fixture(scope="module")
def inputs(world):
    return world_inputs(world)


@pytest.fixture(scope="module")
def backend(model_dir):
    b = DemoBackend.from_pretrained(model_dir, device="cpu", dtype="fp32", max_batch=4, batch_window_s=0.05)
    yield b
    b.close()


@pytest.fixture(scope="module")
def endless(model_dir):
    """A backend whose model never ends an answer by itself: EOS and every token with '#' get zero logits (random
    tiny models otherwise stop at once), so only max_new_tokens or the stop button end a turn."""
    b = DemoBackend.from_pretrained(model_dir, device="cpu", dtype="fp32", max_batch=4, batch_window_s=0.05)
    vocab = b.config.llm.vocab_size
    banned = [b.config.llm.eos_token_id] + [i for i in range(vocab) if "#" in b.processor.decode([i])]
    with torch.no_grad():
        b.model.llm.lm_head.weight[banned] = 0
    yield b
    b.close()


def reference_answer(backend, question, modality, path, options=None, gen=GREEDY, history=()):
    """What the library's batch path (processor + onellm.generation.generate) answers for the same request."""
    proc = backend.processor
    x = proc.load_input(modality, {"path": path, **(options or {})})
    sample = proc.prompt_sample(question, [(modality, x)], history=list(history))
    return generate(backend.model, proc, proc.collate([sample], padding_side="left", with_labels=False), gen).texts[0]


def count_calls(monkeypatch, obj, name):
    calls = []
    original = getattr(obj, name)

    def wrapped(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapped)
    return calls


# ---------------------------------------------------------------------------------------------------------
# Modalities come from the model
def test_model_modalities_are_the_models_own():
    from onellm.config import OneLLMConfig

    config = OneLLMConfig.preset("tiny", modalities=["audio", "image"])
    assert model_modalities(config) == list(config.modalities) == ["audio", "image"]
    assert model_modalities(OneLLMConfig.preset("tiny")) == list(OneLLMConfig.preset("tiny").modalities)


def test_every_registered_modality_has_a_widget_kind():
    require_demo_deps()
    from onellm.demo import widgets
    from onellm.modalities import names

    kinds = {m: widgets.ui_kind(m) for m in names()}
    assert set(kinds.values()) <= set(widgets.KINDS)
    assert kinds == {"image": "image", "video": "video", "audio": "audio", "point": "point_cloud",
                     "depth": "paired_map", "normal": "paired_map", "imu": "signal", "fmri": "voxels"}


# ---------------------------------------------------------------------------------------------------------
# Encoded once per upload
def test_an_upload_is_loaded_and_encoded_once_across_turns(backend, inputs, monkeypatch):
    loads = count_calls(monkeypatch, backend.processor, "load_input")
    encodes = count_calls(monkeypatch, backend.model, "encode_modality")
    upm = count_calls(monkeypatch, backend.model.upm, "forward")
    path, _ = inputs["image"][0]
    first = backend.encode("image", path)
    assert (len(loads), len(encodes), len(upm)) == (1, 1, 1)
    assert first.block.shape == (backend.config.block_length, backend.config.llm.hidden_size)
    history = []
    for question in ("What colour is the shape?", "What shape is shown?", "Describe this image."):
        answer = backend.answer(question, history, [("image", path, {})], GREEDY)
        history.append((question, answer))
    assert (len(loads), len(encodes), len(upm)) == (1, 1, 1), "turns must reuse the upload's block (CLIP and UPM)"
    # the cached block is what the model computes for the loaded file
    x = backend.processor.load_input("image", path)
    with torch.no_grad():
        assert torch.equal(backend.model.encode_modality("image", x[None])[0], first.block)


def test_a_changed_file_or_option_is_encoded_again(backend, inputs, tmp_path, monkeypatch):
    import shutil

    encodes = count_calls(monkeypatch, backend.model, "encode_clip")
    (depth, options), (depth2, options2) = inputs["depth"]
    backend.encode("depth", depth, options)
    backend.encode("depth", depth, dict(options))
    assert len(encodes) == 1
    backend.encode("depth", depth, {"rgb": options2["rgb"]})  # another paired RGB image
    assert len(encodes) == 2
    copy = tmp_path / "d.png"
    shutil.copyfile(depth, copy)
    backend.encode("depth", copy, options)
    assert len(encodes) == 3
    shutil.copyfile(depth2, copy)  # same name, new content
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    backend.encode("depth", copy, options)
    assert len(encodes) == 4
    key = input_key("depth", copy, options)
    assert key is not None and key[1][0] == str(copy.resolve())


def test_bad_uploads_raise_the_loaders_input_error(backend, tmp_path, inputs):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(InputError) as err:
        backend.encode("image", broken)
    assert "broken.png" in str(err.value) and "cannot decode image" in str(err.value)
    with pytest.raises(InputError, match="file not found"):
        backend.encode("audio", tmp_path / "nowhere.wav")
    with pytest.raises(InputError, match="unsupported file extension"):
        backend.encode("fmri", tmp_path / "brain.txt")
    # the backend keeps working after errors
    path, _ = inputs["image"][0]
    assert backend.answer("What colour is the shape?", [], [("image", path, {})], GREEDY) == reference_answer(
        backend, "What colour is the shape?", "image", path)


# ---------------------------------------------------------------------------------------------------------
# Answers: equal to the batch path, multi-turn prompts
@pytest.mark.parametrize("modality", ["image", "video", "audio", "point", "depth", "normal", "imu", "fmri"])
def test_greedy_answer_equals_the_batch_generation_path(backend, inputs, modality):
    path, options = inputs[modality][-1]
    question = "Describe it."
    updates = list(backend.chat(question, [], [(modality, path, options)], GREEDY))
    assert updates[-1].done and all(not u.done for u in updates[:-1])
    assert updates[-1].text == reference_answer(backend, question, modality, path, options)


def test_several_inputs_in_one_turn(backend, inputs):
    (video, _), (audio, _) = inputs["video"][0], inputs["audio"][0]
    proc = backend.processor
    sample = proc.prompt_sample("What happens?", [("video", proc.load_input("video", video)),
                                                  ("audio", proc.load_input("audio", audio))])
    expected = generate(backend.model, proc, proc.collate([sample], with_labels=False), GREEDY).texts[0]
    request = backend.submit("What happens?", [], [("video", video, {}), ("audio", audio, {})], GREEDY)
    assert list(request.stream())[-1].text == expected
    n_blocks = sum(1 for i in request.payload.input_ids if i >= backend.config.llm.vocab_size)
    assert n_blocks == 2 * backend.config.block_length


def test_multi_turn_prompt_is_the_processors_with_history(backend, inputs):
    path, _ = inputs["image"][0]
    entry = backend.encode("image", path)
    history = [("What colour is the shape?", "red"), ("And its shape?", "a circle")]
    sample = backend.build_sample("Anything else?", history, [entry])
    expected = backend.processor.prompt_sample("Anything else?", [("image", entry.block)], history=history)
    assert sample.input_ids == expected.input_ids
    assert backend.answer("Anything else?", history, [entry], GREEDY) == reference_answer(
        backend, "Anything else?", "image", path, history=history)


def test_long_histories_drop_their_oldest_turns(backend, inputs):
    entry = backend.encode("image", inputs["image"][0][0])
    history = [(f"question {i} " + "a red circle " * 8, "a green square " * 8) for i in range(40)]
    sample = backend.build_sample("Last question?", history, [entry], max_new_tokens=32)
    assert len(sample) + 32 <= backend.config.max_seq_len
    kept = backend.processor.decode(sample.input_ids)
    assert "question 39" in kept and "question 0 " not in kept and kept.rstrip().endswith("Assistant:")
    with pytest.raises(ValueError, match="more than the model's"):
        backend.build_sample("x " * backend.config.max_seq_len, [], [entry])


def test_template_none_is_the_raw_question(backend, inputs):
    path, _ = inputs["image"][0]
    proc = backend.processor
    sample = proc.prompt_sample("a picture of", [("image", proc.load_input("image", path))], template="none")
    expected = generate(backend.model, proc, proc.collate([sample], with_labels=False), GREEDY).texts[0]
    request = backend.submit("a picture of", [("ignored", "history")], [("image", path, {})], GREEDY, template="none")
    assert list(request.stream())[-1].text == expected
    assert request.payload.input_ids == sample.input_ids
    with pytest.raises(ValueError, match="template"):
        backend.submit("x", [], [("image", path, {})], GREEDY, template="llava")


def test_empty_question_asks_the_caption_prompt(backend, inputs):
    path, _ = inputs["audio"][0]
    request = backend.submit("", [], [("audio", path, {})], GREEDY)
    list(request.stream())
    prompt = backend.processor.decode(request.payload.input_ids)
    from onellm.modalities import get

    assert get("audio").caption_prompt in prompt


def test_history_from_chat_messages():
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is it?"}]},
                {"role": "assistant", "content": "a cube"},
                {"role": "user", "content": "Which colour?"},
                {"role": "user", "content": "Hello?"}]
    assert history_from_messages(messages) == [("What is it?", "a cube"), ("Which colour?", ""), ("Hello?", "")]
    assert message_text([{"type": "file", "file": {}}, {"type": "text", "text": "x"}]) == "x"


# ---------------------------------------------------------------------------------------------------------
# Streaming and stop
def test_answers_stream_token_by_token(endless, inputs):
    path, _ = inputs["image"][0]
    gen = GenerationConfig(max_new_tokens=20, temperature=0)
    updates = list(endless.chat("Describe this image.", [], [("image", path, {})], gen))
    assert len(updates) >= 10, "one update per generated token"
    texts = [u.text for u in updates]
    assert all(b.startswith(a) for a, b in zip(texts[:-2], texts[1:-1])), "each update extends the last"
    assert updates[-1].done and not updates[-1].stopped
    assert updates[-1].text == reference_answer(endless, "Describe this image.", "image", path, gen=gen)


def test_stop_ends_generation_and_keeps_the_partial_answer(endless, inputs):
    path, _ = inputs["image"][0]
    gen = GenerationConfig(max_new_tokens=400, temperature=0)
    stop = threading.Event()
    request = endless.submit("Describe this image.", [], [("image", path, {})], gen, stop)
    seen = []
    for update in request.stream(timeout=120):
        seen.append(update)
        if len(seen) == 3:
            stop.set()
    final = seen[-1]
    assert final.done and final.stopped
    assert len(seen) < 100, "generation ends soon after the stop, not at max_new_tokens (400)"
    full = reference_answer(endless, "Describe this image.", "image", path, gen=gen)
    assert final.text and full.startswith(final.text) and len(final.text) < len(full)
    # the session goes on: the next turn (with the partial answer as history) works
    after = endless.answer("And then?", [("Describe this image.", final.text)], [("image", path, {})],
                           GenerationConfig(max_new_tokens=5, temperature=0))
    assert after == reference_answer(endless, "And then?", "image", path,
                                     history=[("Describe this image.", final.text)],
                                     gen=GenerationConfig(max_new_tokens=5, temperature=0))


def test_closing_the_stream_stops_its_row(endless, inputs):
    """A cancelled gradio event closes the handler's generator: its row stops generating."""
    path, _ = inputs["image"][0]
    request = endless.submit("Describe this image.", [], [("image", path, {})],
                             GenerationConfig(max_new_tokens=400, temperature=0))
    stream = request.stream(timeout=120)
    next(stream)
    stream.close()
    assert request.stop.is_set()
    deadline = time.monotonic() + 60
    while not request.finished and time.monotonic() < deadline:
        time.sleep(0.05)
    assert request.finished


# ---------------------------------------------------------------------------------------------------------
# Batching concurrent requests
def test_concurrent_requests_run_as_one_batch_with_the_same_answers(endless, inputs):
    image, _ = inputs["image"][0]
    audio, _ = inputs["audio"][0]
    depth, depth_options = inputs["depth"][0]
    asks = [("What colour is the shape?", "image", image, {}, 7), ("Describe the sound.", "audio", audio, {}, 11),
            ("Is it near or far?", "depth", depth, depth_options, 4)]
    for _, m, p, o, _ in asks:  # encode first, so all three arrive at the batcher together
        endless.encode(m, p, o)
    results, threads = {}, []
    barrier = threading.Barrier(len(asks))

    def turn(i, question, modality, path, options, limit):
        barrier.wait()
        request = endless.submit(question, [], [(modality, path, options)],
                                 GenerationConfig(max_new_tokens=limit, temperature=0))
        results[i] = (list(request.stream(timeout=120))[-1].text, request.batch_size)

    before = list(endless.batcher.batches)
    for i, ask in enumerate(asks):
        threads.append(threading.Thread(target=turn, args=(i, *ask)))
        threads[-1].start()
    for t in threads:
        t.join(120)
    assert endless.batcher.batches[len(before):] == [3]
    for i, (question, modality, path, options, limit) in enumerate(asks):
        text, size = results[i]
        assert size == 3
        expected = reference_answer(endless, question, modality, path, options,
                                    gen=GenerationConfig(max_new_tokens=limit, temperature=0))
        assert text == expected, "a row of a batch answers as the same request alone (its own max_new_tokens)"


def _fake_requests(gens):
    return [Request(payload=i, gen=g) for i, g in enumerate(gens)]


def test_batcher_groups_waiting_requests_by_sampling_settings():
    ran = []
    gate = threading.Event()

    def run(batch):
        gate.wait(10)
        ran.append([r.payload for r in batch])
        for r in batch:
            r.piece(f"{r.payload}…")
            r.finish(f"answer {r.payload}")

    batcher = Batcher(run, max_batch=2, window_s=0.0)
    greedy, sampled = GenerationConfig(temperature=0), GenerationConfig(temperature=0.7, top_p=0.9)
    assert batch_key(greedy) == batch_key(GenerationConfig(temperature=0, max_new_tokens=3))
    assert batch_key(greedy) != batch_key(sampled)
    first = batcher.submit(Request(payload="first", gen=greedy))  # occupies the batcher until the gate opens
    time.sleep(0.2)
    waiting = [batcher.submit(r) for r in _fake_requests([greedy, sampled, greedy, greedy, sampled])]
    stopped = batcher.submit(Request(payload="stopped", gen=greedy))
    stopped.stop.set()
    gate.set()
    answers = [list(r.stream(timeout=10))[-1].text for r in [first, *waiting]]
    assert answers == ["answer first"] + [f"answer {i}" for i in range(5)]
    assert list(stopped.stream(timeout=10))[-1].text == ""  # stopped while waiting: never generated
    # the oldest waiting request leads; same settings join it up to max_batch; the rest keep their order
    assert ran == [["first"], [0, 2], [1, 4], [3]]
    batcher.close()


def test_batcher_reports_errors_to_every_request_and_goes_on():
    def run(batch):
        if any(r.payload == "bad" for r in batch):
            raise RuntimeError("the model fell over")
        for r in batch:
            r.finish("fine")

    batcher = Batcher(run, max_batch=4, window_s=0.05)
    bad = [batcher.submit(Request(payload=p, gen=GenerationConfig())) for p in ("ok", "bad")]
    for r in bad:
        with pytest.raises(RuntimeError, match="fell over"):
            list(r.stream(timeout=10))
    later = batcher.submit(Request(payload="ok", gen=GenerationConfig()))
    assert list(later.stream(timeout=10))[-1].text == "fine"
    batcher.close()


# ---------------------------------------------------------------------------------------------------------
# Previews and examples
def test_previews_are_small_pictures():
    from onellm.demo import previews

    rng = np.random.default_rng(0)
    cloud = torch.from_numpy(rng.random((2000, 6), dtype=np.float32))
    for picture in (previews.point_cloud_preview(cloud), previews.imu_preview(torch.randn(6, 400), rate=200),
                    previews.fmri_preview(torch.randn(1, 2048))):
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
        assert 100 <= picture.shape[0] <= 400 and 100 <= picture.shape[1] <= 600
        assert picture.std() > 5  # something is drawn


def test_examples_cover_every_modality_and_load(backend, tmp_path):
    from onellm.demo.examples import synthetic_examples

    examples = synthetic_examples(backend.config, tmp_path)
    tabs = [e.tab for e in examples]
    for modality in backend.modalities:
        assert tabs.count(modality) >= 2
    combined = [e for e in examples if len(e.inputs) > 1]
    assert [[m for m, _, _ in e.inputs] for e in combined] == [["video", "audio"]]
    for example in examples:
        assert example.question
        for modality, path, options in example.inputs:
            assert Path(path).is_file()
            backend.encode(modality, path, options)  # every example is a valid input of the model
    again = synthetic_examples(backend.config, tmp_path)
    assert [(e.question, e.inputs) for e in again] == [(e.question, e.inputs) for e in examples]


# ---------------------------------------------------------------------------------------------------------
# The gradio app's handlers
class FakeRequest:
    def __init__(self, session="s1"):
        self.session_hash = session


@pytest.fixture(scope="module")
def app(backend, tmp_path_factory):
    require_demo_deps()
    from onellm.demo.app import DemoApp
    from onellm.demo.examples import synthetic_examples

    demo = DemoApp(backend, synthetic_examples(backend.config, tmp_path_factory.mktemp("examples")),
                   GenerationConfig(max_new_tokens=12, temperature=0))
    demo.blocks = demo.build()
    return demo


def _values(app, **given):
    """The value list of every widget input, with ``given[modality] = (path, options)`` filled in."""
    values = []
    for widget in app.widgets:
        if widget.modality in given:
            path, options = given[widget.modality]
            values += [path, *[options.get(o) for o in widget.extras]]
        else:
            values += [None] * len(widget.inputs)
    return values


def test_app_has_one_widget_per_model_modality(app, backend):
    assert [w.modality for w in app.widgets] == backend.modalities
    imu = next(w for w in app.widgets if w.modality == "imu")
    assert list(imu.extras) == ["timestamps", "start", "end", "rate"]
    depth = next(w for w in app.widgets if w.modality == "depth")
    assert list(depth.extras) == ["rgb"]
    config = app.blocks.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    assert {f"input-{m}" for m in backend.modalities} <= ids and {"chatbot", "send", "stop", "reset"} <= ids


def test_upload_handler_shows_the_loaders_error_then_recovers(app, inputs, tmp_path):
    widget = next(w for w in app.widgets if w.modality == "image")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    status = app.on_upload(widget, str(broken))[0]
    assert status.startswith("**Error:**") and "cannot decode image" in status and "broken" in status
    assert app.on_upload(widget, inputs["image"][0][0])[0].startswith("Encoded:")
    depth = next(w for w in app.widgets if w.modality == "depth")
    assert "rgb" in app.on_upload(depth, inputs["depth"][0][0], None)[0]
    imu = next(w for w in app.widgets if w.modality == "imu")
    path, options = inputs["imu"][0]
    out = app.on_upload(imu, path, options["timestamps"], "oops", "", "")
    assert "start must be a number" in out[0]
    out = app.on_upload(imu, path, options["timestamps"], str(options["start"]), str(options["end"]), "")
    assert out[0].startswith("Encoded:") and out[1]["visible"] is True  # the channel plot


def test_chat_handler_streams_keeps_history_and_reports_errors(app, inputs, tmp_path):
    path, _ = inputs["image"][0]
    values = _values(app, image=(path, {}))
    outs = list(app.respond(FakeRequest(), "What colour is the shape?", [], 0.0, 0.75, 12, "chat", *values))
    messages, _, status = outs[-1]
    expected = reference_answer(app.backend, "What colour is the shape?", "image", path)
    assert messages == [{"role": "user", "content": {"type": "text", "text": "What colour is the shape?"}},
                        {"role": "assistant", "content": {"type": "text", "text": expected}}]
    assert status.startswith("Answered") and "image" in status
    outs = list(app.respond(FakeRequest(), "And its shape?", messages, 0.0, 0.75, 12, "chat", *values))
    second = outs[-1][0]
    assert second[:2] == messages and second[3]["content"]["text"] == reference_answer(
        app.backend, "And its shape?", "image", path, history=[("What colour is the shape?", expected)])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    bad = _values(app, image=(str(broken), {}))
    outs = list(app.respond(FakeRequest(), "Hi?", second, 0.0, 0.75, 12, "chat", *bad))
    assert len(outs) == 1 and outs[0][0] == second and "cannot decode image" in outs[0][2]
    outs = list(app.respond(FakeRequest(), "", [], 0.0, 0.75, 12, "chat", *_values(app)))
    assert "Upload an input or ask a question" in outs[-1][2]


def test_stop_and_reset_handlers(endless, inputs, tmp_path):
    require_demo_deps()
    from onellm.demo.app import DemoApp

    demo = DemoApp(endless, [], GenerationConfig(max_new_tokens=400, temperature=0))
    demo.build()
    path, _ = inputs["image"][0]
    values = _values(demo, image=(path, {}))
    turn = demo.respond(FakeRequest("s2"), "Describe this image.", [], 0.0, 0.75, 400, "chat", *values)
    outs = [next(turn), next(turn), next(turn)]  # the question, then streaming
    assert not isinstance(demo.stop(FakeRequest("other")), str)  # another session's stop changes nothing
    assert demo.stop(FakeRequest("s2")).startswith("Stopped")
    outs += list(turn)
    messages, _, status = outs[-1]
    assert status.startswith("Stopped") and messages[-1]["role"] == "assistant" and messages[-1]["content"]["text"]
    assert len(outs) < 200, "the turn ended at the stop, long before its 400 tokens"
    assert demo.reset(FakeRequest("s2")) == ([], "", "")
