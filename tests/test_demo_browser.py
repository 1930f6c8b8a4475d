"""End to end: ``onellm demo`` on a tiny model on 127.0.0.1, driven in headless Chromium (playwright).

Not skipped when playwright / Chromium are missing (CI installs them with .ci/demo-deps.sh): they fail, unless
ONELLM_SKIP_BROWSER_TESTS=1 is set. The first test saves a screenshot; with ONELLM_DEMO_SCREENSHOT=PATH set it is
also written there (docs/images/demo.png is made the same way by ``python -m onellm.demo.screenshot``).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from demo_support import require_demo_deps, world_inputs

MAX_NEW_TOKENS = 24
CASES = [("image", 0), ("video", 0), ("audio", 0), ("point", 0), ("point", 1), ("depth", 0), ("normal", 0),
         ("imu", 0), ("fmri", 0)]  # point 0 is a PLY mesh, point 1 a .npy cloud


@pytest.fixture(scope="module")
def deps():
    require_demo_deps(browser=True)


@pytest.fixture(scope="module")
def world(model_dir, tmp_path_factory):
    from onellm.config import OneLLMConfig
    from onellm.data.synth import generate_world

    out = tmp_path_factory.mktemp("browser-world")
    generate_world(out, per_modality=2, seed=11, split="demo", config=OneLLMConfig.from_pretrained(str(model_dir)))
    return world_inputs(out / "demo")


@pytest.fixture(scope="module")
def server(deps, model_dir, tmp_path_factory):
    from onellm.demo.browser import serve

    tmp = tmp_path_factory.mktemp("demo-server")
    log = tmp / "server.log"
    args = ["--device", "cpu", "--dtype", "fp32", "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS),
            "--examples-dir", str(tmp / "examples"), "--concurrency", "2"]
    try:
        with serve(model_dir, args, log_path=log) as url:
            yield url
    except Exception:
        print(log.read_text() if log.exists() else "(no server log)")
        raise


@pytest.fixture(scope="module")
def browser(deps):
    from onellm.demo.browser import chromium

    with chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    from onellm.demo.browser import DemoPage

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        yield DemoPage(context.new_page(), server).open()
    finally:
        context.close()


def onellm_infer(model_dir, tmp_path, inputs, prompt) -> str:
    """The answer of ``onellm infer --temperature 0`` for one request."""
    manifest, output = tmp_path / "requests.jsonl", tmp_path / "answers.jsonl"
    manifest.write_text(json.dumps({"id": "q", "inputs": inputs, "prompt": prompt}) + "\n")
    subprocess.run([sys.executable, "-m", "onellm.cli", "infer", "--model", str(model_dir), "--input", str(manifest),
                    "--output", str(output), "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS),
                    "--num-workers", "0", "--device", "cpu", "--dtype", "fp32"], check=True,
                   env=dict(os.environ, HF_HUB_OFFLINE="1"))
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert rows and "answer" in rows[0], rows
    return rows[0]["answer"]


def test_image_question_answer_equals_onellm_infer(page, world, model_dir, tmp_path):
    path, _ = world["image"][0]
    page.upload("image", path)
    assert page.input_status("image").strip().endswith("reused every turn.")
    question = "What colour is the shape?"
    status = page.ask(question)
    assert "Answered" in status and "(image" in status
    shown = page.answers()
    assert len(shown) == 1
    assert shown[0] == onellm_infer(model_dir, tmp_path, [{"modality": "image", "path": path}], question)
    # a second turn of the same session: the first one is its history
    assert "Answered" in page.ask("What shape is shown?")
    assert len(page.answers()) == 2
    shot = page.screenshot(tmp_path / "demo.png")
    assert 0 < shot.stat().st_size < 200_000
    if os.environ.get("ONELLM_DEMO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ONELLM_DEMO_SCREENSHOT"])


def test_corrupt_upload_shows_the_loaders_error_and_the_next_request_works(page, world, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    page.upload("image", broken)
    status = page.input_status("image", "Error")
    assert "cannot decode image" in status and "broken.png" in status
    status = page.ask("What colour is the shape?")
    assert "Error" in status and "cannot decode image" in status
    assert page.answers() == []
    path, _ = world["image"][1]
    page.upload("image", path)
    assert "Encoded" in page.input_status("image", "Encoded")
    assert "Answered" in page.ask("What colour is the shape?")
    assert len(page.answers()) == 1


@pytest.mark.parametrize("modality,index", CASES, ids=[f"{m}{i}" for m, i in CASES])
def test_every_input_kind_accepts_a_file(page, world, modality, index):
    path, options = world[modality][index]
    page.upload(modality, path, **options)
    status = page.input_status(modality)
    assert "Encoded" in status, status
    preview = {"point": "#preview-point-mesh" if path.endswith(".ply") else "#preview-point",
               "imu": "#preview-imu", "fmri": "#preview-fmri"}.get(modality)
    if preview:
        page.page.wait_for_selector(preview, state="visible", timeout=page.timeout_ms)
    status = page.ask("Describe it.")
    assert "Answered" in status and f"({modality}" in status


def test_video_and_audio_in_one_turn(page, world):
    page.upload("video", world["video"][0][0])
    assert "Encoded" in page.input_status("video")
    page.upload("audio", world["audio"][0][0])
    assert "Encoded" in page.input_status("audio")
    status = page.ask("What happens?")
    assert "Answered" in status and "video + audio" in status


def test_an_example_is_one_click(page):
    page.tab("audio")
    page.page.locator("#examples-audio tbody tr").first.click()
    assert "Encoded" in page.input_status("audio")
    assert page.page.input_value("#question textarea")
    page.page.click("#send")
    status = page.wait_status("status", "Answered", "Error")
    assert "Answered" in status and "(audio" in status


@pytest.fixture(scope="module")
def endless_server(deps, model_dir, tmp_path_factory):
    """A demo of the tiny model with EOS and every '#' token muted (zero logits): its answers run to
    max_new_tokens, long enough to press Stop while they stream."""
    import torch

    from onellm.demo.browser import serve
    from onellm.model import OneLLM
    from onellm.processing import OneLLMProcessor

    tmp = tmp_path_factory.mktemp("endless")
    model = OneLLM.from_pretrained(model_dir, device="cpu", dtype=torch.float32)
    processor = OneLLMProcessor.from_pretrained(model_dir)
    banned = [model.config.llm.eos_token_id] + [i for i in range(model.config.llm.vocab_size)
                                                if "#" in processor.decode([i])]
    with torch.no_grad():
        model.llm.lm_head.weight[banned] = 0
    model.save_pretrained(tmp / "model", processor=processor)
    log = tmp / "server.log"
    args = ["--device", "cpu", "--dtype", "fp32", "--temperature", "0", "--max-new-tokens", "480", "--no-examples"]
    try:
        with serve(tmp / "model", args, log_path=log) as url:
            yield url
    except Exception:
        print(log.read_text() if log.exists() else "(no server log)")
        raise


def test_stop_keeps_the_partial_answer_and_the_session(browser, endless_server, world):
    from onellm.demo.browser import DemoPage

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        page = DemoPage(context.new_page(), endless_server).open()
        page.upload("image", world["image"][0][0])
        assert "Encoded" in page.input_status("image")
        page.ask("Describe this image.", wait=False)
        page.page.wait_for_function(  # streaming: some text shown while the turn still runs
            "() => { const b = document.querySelectorAll('#chatbot [data-testid=bot]');"
            " return b.length == 1 && b[0].innerText.trim().length > 0; }", timeout=page.timeout_ms)
        assert "Generating" in page.status_text("status")
        page.page.click("#stop")
        assert "Stopped" in page.wait_status("status", "Stopped")
        page.page.wait_for_timeout(1000)  # the token in flight when Stop was pressed may still arrive
        partial = page.answers()
        assert len(partial) == 1 and partial[0]
        page.page.wait_for_timeout(1500)
        assert page.answers() == partial, "nothing streams after Stop"
        assert "Stopped" in page.status_text("status")
        # the session goes on: the next turn answers (its history holds the partial answer)
        page.page.fill("#question textarea", "And then?")
        page.page.click("#send")
        page.page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=bot]').length == 2",
                                    timeout=page.timeout_ms)
        page.page.click("#stop")
        page.wait_status("status", "Stopped")
        page.page.wait_for_timeout(1000)
        assert page.answers()[0] == partial[0]
        page.page.click("#reset")
        page.page.wait_for_function("() => document.querySelectorAll('#chatbot [data-testid=bot]').length == 0",
                                    timeout=page.timeout_ms)
        assert "Encoded" in page.status_text("status-image"), "Reset keeps the inputs"
    finally:
        context.close()
