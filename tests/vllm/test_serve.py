"""``onellm serve``: vLLM's OpenAI server with OneLLM registered, on 127.0.0.1 (tiny model, CPU, fp32). A chat
request with an image and an audio file as ``data:`` URLs gets the HF path's greedy answer, token for token."""
from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".wav": "audio/wav"}


def data_url(path: str) -> str:
    return f"data:{MIME[Path(path).suffix]};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.load(r)
    except urllib.error.HTTPError as err:
        return {"http_error": err.code, "body": err.read().decode()}


def test_chat_template_prompts_are_the_hf_input_ids(fixtures):
    """The serving tokenizer + chat template give the HF path's ids for sample conversations (markers in front,
    in message order; history; a text-only one)."""
    from onellm.vllm.serve import check_chat_prompt, serving_tokenizer_directory

    folder = serving_tokenizer_directory(fixtures["model_dir"])
    assert check_chat_prompt(folder, fixtures["model_dir"]) == 4


def test_media_forms_load_like_the_files(fixtures):
    """What the server decodes (a PIL image, (samples, rate) audio) gives the file loaders' tensors."""
    import numpy as np
    import soundfile
    from PIL import Image

    from onellm.checkpoint import read_config
    from onellm.vllm.processor import load_item

    config = read_config(Path(fixtures["model_dir"]))
    e = next(x for x in fixtures["requests"] if x["modalities"] == ["image", "audio"])
    image, audio = e["inputs"]
    with Image.open(image["path"]) as img:
        pil = img.convert("RGB")
    samples, rate = soundfile.read(audio["path"], dtype="float32")
    for got, src in ((load_item("image", pil, config), image), (load_item("audio", (samples, rate), config), audio)):
        want = load_item(src["modality"], src, config)
        assert got.shape == want.shape and float((got - want).abs().max()) == 0.0
    stereo = np.stack([samples, samples])  # (C, T) is accepted too
    assert float((load_item("audio", (stereo, rate), config) - load_item("audio", audio, config)).abs().max()) == 0


@pytest.fixture(scope="module")
def server(fixtures, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "onellm.commands.serve", "--model", fixtures["model_dir"], "--port", str(port),
               "--dtype", "fp32", "--kv-cache-gib", "1", "--served-model-name", "onellm-tiny"]
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 900
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    raise AssertionError("the server did not start:\n" + log.read_text()[-5000:])
                time.sleep(1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_chat_request_with_image_and_audio_equals_hf(server, fixtures):
    from onellm.processing import processor_for_directory

    entries = [e for e in fixtures["requests"] if e["modalities"] == ["image", "audio"]][:2]
    assert entries
    processor = processor_for_directory(fixtures["model_dir"])
    for e in entries:
        image, audio = e["inputs"]
        body = {"model": "onellm-tiny", "temperature": 0, "max_tokens": fixtures["max_new_tokens"],
                "return_token_ids": True,
                "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": data_url(image["path"])}},
                    {"type": "audio_url", "audio_url": {"url": data_url(audio["path"])}},
                    {"type": "text", "text": e["question"]}]}]}
        r = post(server, body)
        assert "choices" in r, r
        choice = r["choices"][0]
        eos = 2
        ids = [t for t in choice["token_ids"] if t != eos]
        assert r["prompt_token_ids"] == e["hf_input_ids"]  # [bos] [image block] [audio block] the chat template
        assert ids == e["hf_token_ids"]
        assert processor.answer(ids) == e["hf_answer"]


def test_text_only_chat_and_a_bad_request(server, fixtures):
    e = next(x for x in fixtures["requests"] if not x["modalities"])
    r = post(server, {"model": "onellm-tiny", "temperature": 0, "max_tokens": fixtures["max_new_tokens"],
                      "return_token_ids": True, "messages": [{"role": "user", "content": e["question"]}]})
    assert r["prompt_token_ids"] == e["hf_input_ids"]
    assert [t for t in r["choices"][0]["token_ids"] if t != 2] == e["hf_token_ids"]
    bad = post(server, {"model": "onellm-tiny", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"no").decode()}},
        {"type": "text", "text": "What is it?"}]}]})
    assert bad.get("http_error") == 400, bad
    # the server still answers after a rejected request
    again = post(server, {"model": "onellm-tiny", "temperature": 0, "max_tokens": 4,
                          "messages": [{"role": "user", "content": "Hi."}]})
    assert "choices" in again, again
