"""OneLLM on vLLM 0.32 (CPU, fp32) against the HF path: prompts, loaders, encoder blocks, greedy token ids."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from onellm.vllm.encoder import block_length, placeholder_ids
from onellm.vllm.engine import expanded_prompt


def _inputs(entry):
    return [(src["modality"], src) for src in entry["inputs"]]


def _requests(engine, entries):
    """The HF processor's own prompt ids (placeholder blocks included) with the items as manifest input dicts."""
    return [{"prompt_token_ids": e["hf_input_ids"], **({"multi_modal_data": _grouped(e)} if e["inputs"] else {})}
            for e in entries]


def _grouped(entry):
    data = {}
    for m, src in _inputs(entry):
        data.setdefault(m, []).append(src)
    return data


def _assert_same_ids(entries, got):
    wrong = [(e["id"], e["hf_token_ids"], ids) for e, ids in zip(entries, got) if ids != e["hf_token_ids"]]
    assert not wrong, f"{len(wrong)} of {len(entries)} differ; first: {wrong[0]}"


def test_vllm_is_the_pinned_release():
    import vllm

    from onellm.vllm import VLLM_VERSION

    assert vllm.__version__.split("+")[0] == VLLM_VERSION
    for name in ("torchvision", "torchaudio", "open_clip"):  # this environment has none of them
        with pytest.raises(ImportError):
            __import__(name)


def test_entry_point_registers_the_plugin(tmp_path):
    """vLLM's own plugin loader finds ``onellm.vllm.plugin:register`` through a ``vllm.general_plugins`` entry point
    (here a throw-away dist-info; the project's setup.py declares the same entry point) and registers the model."""
    dist = tmp_path / "onellm_vllm_entry_point_test-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: onellm-vllm-entry-point-test\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[vllm.general_plugins]\nonellm = onellm.vllm.plugin:register\n")
    code = ("from vllm.plugins import load_general_plugins; load_general_plugins()\n"
            "from vllm import ModelRegistry\n"
            "from vllm.transformers_utils.config import get_config_parser\n"
            "assert 'OneLLMForVLLM' in ModelRegistry.get_supported_archs()\n"
            "print(type(get_config_parser('onellm')).__name__)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "OneLLMConfigParser"


def test_prompts_are_the_hf_layout(engine, fixtures):
    """engine.request builds exactly the input_ids of the HF processor: [bos] [K + 2 placeholder ids per input] text."""
    config = engine.config
    n, ids = block_length(config), placeholder_ids(config)
    for e in fixtures["requests"]:
        req = engine.request(e["question"], _inputs(e))
        assert req["prompt_token_ids"] == e["hf_input_ids"], e["id"]
        assert expanded_prompt(e["text_ids"], e["modalities"], config) == e["hf_input_ids"]
        want = e["hf_input_ids"]
        assert want[:1] == [config.llm.bos_token_id]
        assert want[1:1 + n * len(e["modalities"])] == [ids[m] for m in e["modalities"] for _ in range(n)]


def test_loaders_and_encoder_blocks_match_the_main_environment(engine, fixtures):
    """Loading in this environment (no torchaudio, no torchvision) and the encoder module equal the main env's."""
    from safetensors.torch import load_file

    from onellm.checkpoint import weight_files
    from onellm.vllm.encoder import build_encoder
    from onellm.vllm.processor import load_item

    ref = load_file(fixtures["reference"])
    encoder = build_encoder(engine.config).eval()
    state = {}
    for f in weight_files(Path(fixtures["model_dir"])):
        state.update({k: v for k, v in load_file(str(f)).items() if not k.startswith("llm.")})
    encoder.load_state_dict(state, strict=True)
    modalities = sorted({k.split(".")[0] for k in ref})
    assert modalities == sorted(["image", "video", "audio", "point", "depth", "normal", "imu", "fmri"])
    for m in modalities:
        source = json.loads(bytes(ref[f"{m}.source"].tolist()).decode())
        x = load_item(m, source, engine.config)
        assert x.shape == ref[f"{m}.input"].shape
        assert (x - ref[f"{m}.input"]).abs().max().item() <= 1e-5, m
        with torch.no_grad():
            block = encoder.encode(m, ref[f"{m}.input"][None])[0]
        assert block.shape == (block_length(engine.config), engine.config.llm.hidden_size)
        assert (block - ref[f"{m}.block"]).abs().max().item() <= 1e-5, m


MODALITIES = ["image", "video", "audio", "point", "depth", "normal", "imu", "fmri"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_greedy_ids_equal_hf_per_modality(engine, fixtures, greedy, modality):
    entries = [e for e in fixtures["requests"] if e["modalities"] == [modality]]
    assert len(entries) >= 2
    out = engine.generate(_requests(engine, entries), greedy)
    _assert_same_ids(entries, out.token_ids)
    assert out.texts == [e["hf_answer"] for e in entries]


def test_video_plus_audio_sample(engine, fixtures, greedy):
    entries = [e for e in fixtures["requests"] if e["modalities"] == ["video", "audio"]]
    assert entries
    out = engine.generate(_requests(engine, entries), greedy)
    _assert_same_ids(entries, out.token_ids)
    assert out.texts == [e["hf_answer"] for e in entries]


def test_mixed_batch_of_64(engine, fixtures, greedy):
    entries = [e for e in fixtures["requests"] if e["modalities"]]
    assert len(entries) == 64 and len({tuple(e["modalities"]) for e in entries}) >= 10
    assert len({tuple(e["hf_token_ids"]) for e in entries}) >= 32  # the inputs matter: answers differ
    out = engine.generate(_requests(engine, entries), greedy)
    _assert_same_ids(entries, out.token_ids)
    assert out.texts == [e["hf_answer"] for e in entries]


def test_prompt_forms_and_item_kinds_agree(engine, fixtures, greedy):
    """The same requests as (a) expanded placeholders + file paths, (b) one placeholder id per item + tensors,
    (c) no placeholder (blocks inserted after BOS) + manifest dicts give the HF path's ids."""
    from onellm.vllm.processor import load_item

    entries = [e for e in fixtures["requests"] if len(e["modalities"]) == 2][:3]
    entries += [e for e in fixtures["requests"] if e["modalities"] == ["depth"]][:1]
    config = engine.config
    pid = placeholder_ids(config)
    compact, bare = [], []
    for e in entries:
        tensors = {}
        for m, src in _inputs(e):
            tensors.setdefault(m, []).append(load_item(m, src, config))
        text = e["text_ids"]
        compact.append({"prompt_token_ids": text[:1] + [pid[m] for m in e["modalities"]] + text[1:],
                        "multi_modal_data": tensors})
        data = {}
        for m, src in _inputs(e):
            data.setdefault(m, []).append(src)
        bare.append({"prompt_token_ids": list(text), "multi_modal_data": data})
    paths = [{"prompt_token_ids": expanded_prompt(e["text_ids"], e["modalities"], config),
              "multi_modal_data": {m: [s["path"] if m not in ("depth", "normal") else s
                                       for mm, s in _inputs(e) if mm == m] for m in dict.fromkeys(e["modalities"])}}
             for e in entries]
    for reqs in (paths, compact, bare):
        _assert_same_ids(entries, engine.generate(reqs, greedy).token_ids)


def test_batched_tensor_item_and_text_only_request(engine, fixtures, greedy):
    from onellm.vllm.processor import load_item

    first = next(e for e in fixtures["requests"] if e["modalities"] == ["image"])
    x = load_item("image", first["inputs"][0], engine.config)  # the same image twice: one (2, 3, S, S) tensor
    batched = {"prompt_token_ids": expanded_prompt(first["text_ids"], ["image", "image"], engine.config),
               "multi_modal_data": {"image": torch.stack([x, x])}}
    listed = {"prompt_token_ids": batched["prompt_token_ids"], "multi_modal_data": {"image": [x, x]}}
    text = next(e for e in fixtures["requests"] if not e["modalities"])
    out = engine.generate([batched, listed, engine.request(text["question"])], greedy)
    assert out.token_ids[0] == out.token_ids[1]
    assert out.token_ids[0] != first["hf_token_ids"]  # two blocks are another prompt than one
    assert out.token_ids[2] == text["hf_token_ids"]  # a text-only request in a multimodal batch


def test_bad_requests_fail_before_the_engine(engine, fixtures, greedy):
    from vllm.exceptions import VLLMValidationError

    e = next(e for e in fixtures["requests"] if e["modalities"] == ["video", "audio"])
    config = engine.config
    ids = expanded_prompt(e["text_ids"], ["video"], config)  # a block for the video only
    data = {"video": [e["inputs"][0]], "audio": [e["inputs"][1]]}
    with pytest.raises(ValueError, match="no placeholder"):
        engine.llm.generate([{"prompt_token_ids": ids, "multi_modal_data": data}], use_tqdm=False)
    more = expanded_prompt(e["text_ids"], ["video", "video"], config)  # two blocks, one item
    with pytest.raises(ValueError, match="without an input item|no placeholder"):
        engine.llm.generate([{"prompt_token_ids": more, "multi_modal_data": {"video": [e["inputs"][0]]}}],
                            use_tqdm=False)
    with pytest.raises(VLLMValidationError, match="not part of a multimodal item"):
        engine.llm.generate([{"prompt_token_ids": ids}], use_tqdm=False)
    with pytest.raises(ValueError, match="placeholder ids but no multi_modal_data"):
        engine.generate([{"prompt_token_ids": ids}], greedy)
    with pytest.raises(ValueError, match="Unsupported modality|no .*thermal"):
        engine.llm.generate([{"prompt_token_ids": e["text_ids"], "multi_modal_data": {"thermal": [1]}}],
                            use_tqdm=False)
    with pytest.raises(ValueError, match="must have shape"):
        engine.llm.generate([{"prompt_token_ids": e["text_ids"], "multi_modal_data": {"audio": torch.zeros(3, 4)}}],
                            use_tqdm=False)
    # the engine still serves after rejected requests
    ok = [x for x in fixtures["requests"] if x["modalities"] == ["fmri"]][:1]
    _assert_same_ids(ok, engine.generate(_requests(engine, ok), greedy).token_ids)
