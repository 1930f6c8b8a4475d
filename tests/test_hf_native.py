"""OneLLM as a HuggingFace model: the previous implementation's numbers, placeholder ids, the processor, model
directories in HF's layout, Auto classes with and without the library, ``model.chat``."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onellm.config import OneLLMConfig
from onellm.data.collate import collate_packed
from onellm.generation import GenerationConfig, generate
from onellm.model import OneLLM, OneLLMForConditionalGeneration
from onellm.processing import OneLLMProcessor

from helpers import processor_for, random_input, request_sample, tiny_model_with_tokenizer

LEGACY = Path(__file__).parent / "data" / "legacy_v1"


@pytest.fixture(scope="module")
def model_dir(text_tokenizer, tmp_path_factory):
    model = tiny_model_with_tokenizer(text_tokenizer)
    return model.save_pretrained(tmp_path_factory.mktemp("m") / "tiny", processor=processor_for(model, text_tokenizer))


@pytest.fixture(scope="module")
def legacy():
    model = OneLLM.from_pretrained(LEGACY / "model")
    processor = OneLLMProcessor.from_pretrained(LEGACY / "model")
    ref = load_file(str(LEGACY / "reference.safetensors"))
    layout = json.loads((LEGACY / "reference.json").read_text())["samples"]
    samples = [processor.pack(ref[f"ids.{k}"].tolist(), None, [(m, ref[f"input.{k}.{j}"]) for j, m in enumerate(mods)])
               for k, mods in enumerate(layout)]
    return model, processor, ref, layout, samples


def test_previous_implementation_logits_for_every_modality_a_mixed_batch_and_two_inputs(legacy):
    """Reference logits were written by the implementation before the registry and the HF class (commit f1a005c,
    tests/data/legacy_v1/make_fixture.py) from a model directory in its format; the new class loads that directory
    in place and reproduces them: each modality alone, video + audio in one sample, and all nine in one batch."""
    model, processor, ref, layout, samples = legacy
    assert "format" in json.loads((LEGACY / "model" / "config.json").read_text())  # really the old layout
    assert {m for mods in layout for m in mods} == set(model.config.modalities) and ["video", "audio"] in layout
    with torch.no_grad():
        mixed = model(**processor.collate(samples, padding_side="right", with_labels=False)).logits
        assert (mixed - ref["logits.mixed"]).abs().max() < 1e-5
        for k, s in enumerate(samples):
            last = model(**processor.collate([s], with_labels=False)).logits[0, -1]
            assert (last - ref[f"logits.single.{k}"]).abs().max() < 1e-5, layout[k]


def test_placeholder_ids_are_out_of_vocabulary_and_per_modality(legacy):
    model, processor, _, _, samples = legacy
    cfg = model.config
    assert cfg.placeholder_token_ids == {m: cfg.llm.vocab_size + i for i, m in enumerate(cfg.modalities)}
    batch = processor.collate(samples[-1:], with_labels=False)  # video + audio
    ids = batch["input_ids"][0].tolist()
    K2 = cfg.block_length
    assert ids[1:1 + K2] == [cfg.placeholder_token_id("video")] * K2
    assert ids[1 + K2:1 + 2 * K2] == [cfg.placeholder_token_id("audio")] * K2
    assert set(batch) == {"input_ids", "attention_mask", "video_values", "audio_values"}


def test_placeholder_count_mismatch_is_a_clear_error(legacy):
    model, processor, ref, _, samples = legacy
    batch = dict(processor.collate(samples[:1], with_labels=False))  # one image block
    batch["image_values"] = torch.cat([batch["image_values"]] * 2)  # two image inputs
    with pytest.raises(ValueError, match="image placeholder tokens and image inputs do not match: input_ids has 6 "
                                         "image positions, the inputs make 2 block"):
        model(**batch)
    with pytest.raises(TypeError, match="unexpected model input"):
        model(**processor.collate(samples[:1], with_labels=False), thermal_values=torch.zeros(1))


def test_processor_call_apply_chat_template_and_the_dataset_path_build_the_same_batch(model_dir):
    processor = OneLLMProcessor.from_pretrained(model_dir)
    x = random_input(processor.config, "image", torch.Generator().manual_seed(0))
    a = torch.rand(processor.config.inputs.audio.mel_bins * 0 + 1, processor.config.inputs.audio.mel_bins,
                   processor.config.inputs.audio.frames)
    prompt = processor.apply_chat_template([{"role": "user", "content": [
        {"type": "image"}, {"type": "audio"}, {"type": "text", "text": "What is it?"}]}])
    assert prompt.startswith("<image><audio>A chat between") and prompt.endswith("### Human: What is it?\n### Assistant:")
    via_call = processor(text=prompt, image=x, audio=a)
    via_dataset = processor.collate([processor.prompt_sample("What is it?", [("image", x), ("audio", a)])],
                                    with_labels=False)
    assert via_call.keys() == via_dataset.keys()
    for key in via_call:
        assert torch.equal(via_call[key], via_dataset[key]), key
    # a plain question without markers gets the inputs in front; more inputs than markers is an error
    assert torch.equal(processor(text=prompt.replace("<image><audio>", ""), image=x, audio=a)["input_ids"],
                       via_call["input_ids"])
    with pytest.raises(ValueError, match="more inputs than markers"):
        processor(text=["<image>" + prompt.replace("<image><audio>", ""), "no marker"], image=[x, x])


def test_processor_save_load_round_trip(model_dir, tmp_path):
    processor = OneLLMProcessor.from_pretrained(model_dir)
    processor.save_pretrained(tmp_path / "p")
    saved = json.loads((tmp_path / "p" / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_onellm.OneLLMProcessor"}
    assert (tmp_path / "p" / "tokenizer.model").is_file()
    again = OneLLMProcessor.from_pretrained(tmp_path / "p")
    assert again.config == processor.config and again.padding_side == "left"
    text = "<image> What colour is the object?"
    x = random_input(processor.config, "image")
    assert torch.equal(again(text=text, image=x)["input_ids"], processor(text=text, image=x)["input_ids"])
    ids = processor(text="a red circle")["input_ids"][0].tolist()
    assert again.decode(ids) == processor.decode(ids) == "a red circle"


def test_saved_directory_layout_sharding_card_and_strict_reload(legacy, tmp_path):
    model, processor, ref, _, samples = legacy
    out = model.save_pretrained(tmp_path / "m", processor=processor, max_shard_size="300KB")
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors.index.json", "processor_config.json", "tokenizer_config.json",
            "README.md", "modeling_onellm.py", "configuration_onellm.py", "processing_onellm.py"} <= files
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "onellm" and config["auto_map"]["AutoModelForCausalLM"].startswith("modeling_")
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "| fmri | `<fmri>` |" in card and "{" not in card.split("---")[1]
    modes = {oct((out / f).stat().st_mode & 0o777) for f in files}
    assert modes == {oct(0o666 & ~_umask())}  # safetensors writes 0600; the directory follows the umask
    again = OneLLM.from_pretrained(out)
    with torch.no_grad():
        mixed = again(**processor.collate(samples, padding_side="right", with_labels=False)).logits
    assert (mixed - ref["logits.mixed"]).abs().max() < 1e-5
    # strict: a missing tensor is named
    weights = load_file(str(out / shards[-1]))
    from safetensors.torch import save_file

    dropped = sorted(weights)[0]
    save_file({k: v for k, v in weights.items() if k != dropped}, str(out / shards[-1]), metadata={"format": "pt"})
    with pytest.raises(Exception, match="missing keys"):
        OneLLM.from_pretrained(out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_auto_classes_after_import_onellm(legacy, tmp_path):
    """``import onellm`` registers the Auto classes (no remote code needed with the library installed)."""
    model, processor, _, _, _ = legacy
    out = model.save_pretrained(tmp_path / "m", processor=processor)
    code = textwrap.dedent(f"""
        import onellm
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor
        c = AutoConfig.from_pretrained({str(out)!r})
        m = AutoModelForCausalLM.from_pretrained({str(out)!r})
        p = AutoProcessor.from_pretrained({str(out)!r})
        print(type(c).__module__, type(m).__module__, type(p).__module__,
              AutoModelForImageTextToText.from_pretrained({str(out)!r}).__class__.__name__)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["onellm.config", "onellm.model.onellm", "onellm.processing",
                                  "OneLLMForConditionalGeneration"]


def test_trust_remote_code_loads_and_generates_without_the_library(legacy, tmp_path):
    """A process where ``import onellm`` fails loads the directory's own code through transformers and gives the
    same greedy tokens as the library."""
    model, processor, ref, _, _ = legacy
    out = model.save_pretrained(tmp_path / "m", processor=processor)
    x = ref["input.0.0"]
    torch.save({"image": x}, tmp_path / "x.pt")
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": "What is it?"}]}])
    inputs = processor(text=prompt, image=x)
    with torch.no_grad():
        expected = model.generate(**inputs, max_new_tokens=6, do_sample=False)[0, inputs["input_ids"].shape[1]:]
    code = textwrap.dedent(f"""
        import sys
        sys.modules["onellm"] = None  # the library cannot be imported
        import torch
        from transformers import AutoModelForCausalLM, AutoProcessor
        m = AutoModelForCausalLM.from_pretrained({str(out)!r}, trust_remote_code=True)
        p = AutoProcessor.from_pretrained({str(out)!r}, trust_remote_code=True)
        x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)["image"]
        inputs = p(text={prompt!r}, image=x)
        with torch.no_grad():
            out = m.generate(**inputs, max_new_tokens=6, do_sample=False)
        print(type(m).__module__.startswith("transformers_modules"), out[0, inputs["input_ids"].shape[1]:].tolist())
        print(repr(m.chat(p, "What is it?", image=x, temperature=0, max_new_tokens=6)))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    first, second = res.stdout.strip().splitlines()[-2:]
    assert first == f"True {expected.tolist()}"
    assert second == repr(model.chat(processor, "What is it?", image=x, temperature=0, max_new_tokens=6))


def test_remote_code_modules_only_import_each_other():
    from onellm.hf_export import ENTRY_MODULES, closure, flattened_source

    modules = closure()
    assert {m for m, _ in ENTRY_MODULES.values()} <= set(modules)
    assert not any(m.startswith(("onellm.training", "onellm.evaluation", "onellm.commands", "onellm.quickstart"))
                   for m in modules)
    import ast

    flat = {m.replace(".", "_") for m in modules}
    for m in modules:
        for node in ast.walk(ast.parse(flattened_source(m))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module in flat, (m, node.module)  # a sibling flat module
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(n.split(".")[0] == "onellm" for n in names), m


def test_chat_one_call(text_tokenizer):
    model = tiny_model_with_tokenizer(text_tokenizer)
    processor = processor_for(model, text_tokenizer)
    g = torch.Generator().manual_seed(0)
    s = request_sample(processor, ["point"], "Describe it.", g)
    gen = GenerationConfig(max_new_tokens=8, temperature=0)
    expected = generate(model, processor, collate_packed([s], padding_side="left", with_labels=False), gen).texts[0]
    assert model.chat(processor, "Describe it.", point=s.inputs[0][1], temperature=0, max_new_tokens=8) == expected


def test_hf_model_declarations(text_tokenizer):
    model = tiny_model_with_tokenizer(text_tokenizer)
    assert isinstance(model, OneLLMForConditionalGeneration) and model.supports_gradient_checkpointing
    assert {"LlamaDecoderLayer", "ExpertBlock", "ResidualAttentionBlock"} <= set(model._no_split_modules)
    assert model.config.model_type == "onellm" and isinstance(model.config, OneLLMConfig)
    model.train()
    model.activation_checkpointing_enable()
    assert model.upm.gradient_checkpointing and model.llm.is_activation_checkpointing
    g = torch.Generator().manual_seed(1)
    from helpers import batch_of, random_sample

    batch = batch_of([random_sample(model, ["audio"], 8, g)])
    with_ckpt = model(**batch).loss
    with_ckpt.backward()
    model.activation_checkpointing_disable()
    assert not model.upm.gradient_checkpointing
    with torch.no_grad():
        assert torch.allclose(model(**batch).loss, with_ckpt.detach(), atol=1e-6)


def test_attention_implementation_is_chosen_at_load_and_checked():
    default = OneLLM.from_pretrained(LEGACY / "model")
    assert default.llm.config._attn_implementation == "sdpa"  # detected: torch has SDPA
    eager = OneLLM.from_pretrained(LEGACY / "model", attn_implementation="eager")
    assert eager.llm.config._attn_implementation == "eager"
    ids = torch.tensor([[1, 5, 9, 12]])
    with torch.no_grad():
        torch.testing.assert_close(default(input_ids=ids).logits, eager(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    import importlib.util

    if importlib.util.find_spec("flash_attn") is None:  # never required: asking for it without it is a clear error
        with pytest.raises(ImportError, match="FlashAttention2"):
            OneLLM.from_pretrained(LEGACY / "model", attn_implementation="flash_attention_2")


def test_finished_blocks_input_equals_raw_inputs(legacy):
    """``<m>_blocks`` (encoded once, e.g. per upload in the web demo) gives exactly the raw inputs' logits."""
    from onellm.features import CachedBlocks

    model, processor, ref, _, samples = legacy
    s = samples[-1]  # video + audio
    with torch.no_grad():
        blocks = [(m, CachedBlocks(model.encode_modality(m, x[None])[0])) for m, x in s.inputs]
        raw = model(**processor.collate([s], with_labels=False)).logits
        pre = processor.collate([processor.pack(ref[f"ids.{len(samples) - 1}"].tolist(), None, blocks)],
                                with_labels=False)
        assert set(pre) == {"input_ids", "attention_mask", "video_blocks", "audio_blocks"}
        torch.testing.assert_close(model(**pre).logits, raw)
        mixed = dict(pre, video_values=processor.collate([s], with_labels=False)["video_values"])
        with pytest.raises(ValueError, match="cannot be mixed"):
            model(**mixed)
