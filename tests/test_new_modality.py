"""A ninth modality added without editing a library file: registered by a plugin module, synthesised, trained onto a
trained eight-modality model with ``add_modalities``, saved, reloaded strictly, generating; the eight others keep
every parameter and every greedy answer bit for bit."""
import importlib
import sys
from pathlib import Path

import pytest
import torch

from onellm.data.collate import collate_packed
from onellm.data.synth import generate_world
from onellm.generation import GenerationConfig, generate
from onellm.modalities import DEFAULT_MODALITIES, is_registered, unregister
from onellm.model import OneLLM
from onellm.processing import OneLLMProcessor
from onellm.training import load_recipe, train

from helpers import random_input

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "modality_plugins"


@pytest.fixture(scope="module")
def thermal():
    sys.path.insert(0, str(PLUGINS))
    module = importlib.import_module("thermal")
    yield module.THERMAL
    unregister("thermal")
    sys.modules.pop("thermal", None)
    sys.path.remove(str(PLUGINS))


def recipe(tmp: Path, name: str, model: Path, manifest: Path, *overrides: str):
    base = [f"model={model}", f"output_dir={tmp / name}", "num_workers=0", "report_to=[]", "log_every=100",
            f"datasets=[{{manifest: {manifest}}}]", "micro_batch=4", "save_every=100", "precision=fp32", "max_steps=30"]
    return load_recipe(ROOT / "train" / "recipes" / "tiny_stage1_image.yaml", base + list(overrides))


def answers(model, processor, requests):
    gen = GenerationConfig(max_new_tokens=6, temperature=0, stop_strings=())
    batch = collate_packed(requests, padding_side="left", with_labels=False)
    return generate(model, processor, batch, gen).token_ids


def test_ninth_modality_trains_on_a_trained_model_and_changes_nothing_else(thermal, model_dir, tmp_path):
    assert is_registered("thermal") and is_registered("infrared")
    world = generate_world(tmp_path / "world", 6, seed=0, modalities="image,thermal")
    manifest = Path(world["manifests"]["alignment"])
    image_only = manifest.parent / "image.jsonl"  # next to it: paths are relative to the manifest
    image_only.write_text("".join(l for l in manifest.read_text().splitlines(True) if '"image"' in l))
    assert world["counts"] == {"image": 6, "thermal": 6}

    # a trained eight-modality model: stage I on images
    stage1 = train(recipe(tmp_path, "stage1", model_dir, image_only, "max_steps=3"), log=lambda *_: None)
    base = OneLLM.from_pretrained(stage1.model_dir)
    processor = OneLLMProcessor.from_pretrained(stage1.model_dir)
    assert base.config.modalities == list(DEFAULT_MODALITIES)
    g = torch.Generator().manual_seed(0)
    requests = [processor.prompt_sample("What is it?", [(m, random_input(base.config, m, g))])
                for m in DEFAULT_MODALITIES]
    before_answers = answers(base, processor, requests)
    before = {k: v.clone() for k, v in base.state_dict().items()}

    # the new modality: only its own parts train (the shared experts stay as they are)
    thermal_only = manifest.parent / "thermal.jsonl"
    thermal_only.write_text("".join(l for l in manifest.read_text().splitlines(True) if '"thermal"' in l))
    r = recipe(tmp_path, "thermal", stage1.model_dir, thermal_only, "max_steps=4", "add_modalities=[thermal]",
               "modules=[thermal]", "trainable.tokenizers=[thermal]", "trainable.upm=[thermal]",
               "trainable.experts=false")
    result = train(r, log=lambda *_: None)
    assert result.steps == 4 and result.losses[-1] < result.losses[0]

    model = OneLLM.from_pretrained(result.model_dir)  # strict: every tensor accounted for
    assert model.config.modalities == [*DEFAULT_MODALITIES, "thermal"]
    after = model.state_dict()
    new = sorted(set(after) - set(before))
    assert new and all(".thermal" in k for k in new)
    assert {k.split(".")[1] for k in new} == {"conv1", "positional_embedding", "resample_tokens", "clip_proj1",
                                             "clip_proj2", "routers", "start_tag", "end_tag"}
    assert all(torch.equal(after[k], v) for k, v in before.items())  # the eight others: bit-identical
    assert model.config.placeholder_token_ids == {**base.config.placeholder_token_ids,
                                                  "thermal": base.config.llm.vocab_size + 8}
    new_processor = OneLLMProcessor.from_pretrained(result.model_dir)
    assert answers(model, new_processor, requests) == before_answers
    t = new_processor.load_input("thermal", {"path": str(thermal_only.parent / "thermal" / "00000.npy")})
    out = generate(model, new_processor, collate_packed([new_processor.prompt_sample("What is it?", [("thermal", t)])],
                                                        padding_side="left", with_labels=False),
                   GenerationConfig(max_new_tokens=5, temperature=0, stop_strings=()))
    assert len(out.token_ids[0]) == 5
    # its init came from the image parts (then trained): the thermal UPM parts are not random
    assert not torch.equal(after["upm.clip_proj2.thermal.0.weight"], before["upm.clip_proj2.image.0.weight"])


def test_a_model_with_an_unregistered_modality_names_it(thermal, tmp_path, text_tokenizer):
    from onellm.config import OneLLMConfig
    from onellm.errors import CheckpointError

    config = OneLLMConfig.preset("tiny", **{"llm.vocab_size": len(text_tokenizer)})
    config.add_modalities(["thermal"])
    torch.manual_seed(0)
    model = OneLLM(config)
    out = model.save_pretrained(tmp_path / "m", processor=OneLLMProcessor.for_config(config, text_tokenizer))
    unregister("thermal")
    try:
        with pytest.raises(CheckpointError, match="unknown modality 'thermal'"):
            OneLLM.from_pretrained(out)
    finally:
        from onellm.modalities import register

        register(thermal)
