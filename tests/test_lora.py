"""LoRA instruction tuning: only adapters (and named parts) train, adapters round-trip, merge == base + adapter,
and the dry-run's counts are the real ones."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onellm import OneLLM
from onellm.cli import main
from onellm.data.collate import collate_packed
from onellm.training import load_recipe, train
from onellm.training.estimate import build_meta_model, estimate

from onellm.generation import GenerationConfig, generate
from onellm.processing import OneLLMProcessor

from helpers import request_sample, synth_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return synth_world(tmp_path_factory, 4, 3, "image,audio,fmri")


def lora_recipe(world, model_dir, out, *extra):
    recipe = load_recipe(ROOT / "train/recipes/instruction_lora.yaml",
                         [f"model={model_dir}", f"output_dir={out}", "max_steps=12", "micro_batch=4", "accumulation=1",
                          "precision=fp32", "gradient_checkpointing=false", "num_workers=0", "report_to=[]",
                          "save_every=6", "optimizer.lr=5e-3", "lora.rank=4", "log_every=100", *extra])
    recipe.datasets = recipe.datasets[:1]
    recipe.datasets[0].manifest = str(world / "instruction.jsonl")
    return recipe


@pytest.fixture(scope="module")
def trained(world, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    recipe = lora_recipe(world, model_dir, out, "trainable.upm=[audio]", "trainable.experts=false")
    result = train(recipe, log=lambda *_: None)
    return recipe, result


def test_only_adapters_and_named_parts_train_and_the_loss_falls(trained, model_dir):
    recipe, result = trained
    assert sum(result.losses[-3:]) / 3 < sum(result.losses[:3]) / 3
    adapter = result.model_dir
    files = {p.name for p in adapter.iterdir()}
    assert {"onellm_adapter.json", "adapter_config.json", "adapter_model.safetensors",
            "trained_parts.safetensors"} <= files
    assert "model.safetensors" not in files  # the 7B base is not copied
    lora = load_file(str(adapter / "adapter_model.safetensors"))
    assert lora and all("lora_" in k for k in lora)
    parts = load_file(str(adapter / "trained_parts.safetensors"))
    assert parts and all(".audio" in k and k.startswith("upm.") for k in parts)
    base = OneLLM.from_pretrained(model_dir)
    tuned = OneLLM.from_pretrained(adapter)  # the adapter directory knows its base
    base_sd, tuned_sd = base.state_dict(), tuned.state_dict()
    for name, value in base_sd.items():
        if name.startswith("llm."):
            peft_name = "llm.base_model.model." + name[len("llm."):]
            peft_name = peft_name.replace(".weight", ".base_layer.weight") if peft_name not in tuned_sd else peft_name
            assert torch.equal(tuned_sd[peft_name], value), name  # frozen base weights untouched
        elif name in parts:
            assert not torch.equal(tuned_sd[name], value)
        else:
            assert torch.equal(tuned_sd[name], value), name


def test_merged_model_equals_base_plus_adapter(trained, tmp_path, text_tokenizer):
    _, result = trained
    merged_dir = tmp_path / "merged"
    assert main(["merge-lora", "--adapter", str(result.model_dir), "--out", str(merged_dir)]) == 0
    merged = OneLLM.from_pretrained(merged_dir)
    assert not any("lora" in k for k in merged.state_dict())
    with_adapter = OneLLM.from_pretrained(result.model_dir)
    processor = OneLLMProcessor.from_pretrained(result.model_dir)
    g = torch.Generator().manual_seed(0)
    samples = [request_sample(processor, [m], "Describe this.", g) for m in ("image", "audio")]
    batch = collate_packed(samples, padding_side="left", with_labels=False)
    gen = GenerationConfig(max_new_tokens=8, temperature=0)
    a = generate(with_adapter, processor, batch, gen, output_logits=True)
    b = generate(merged, OneLLMProcessor.from_pretrained(merged_dir), batch, gen, output_logits=True)
    assert a.token_ids == b.token_ids
    for la, lb in zip(a.logits, b.logits):
        torch.testing.assert_close(la, lb, atol=1e-4, rtol=1e-4)


def test_adapter_save_load_round_trip(trained, model_dir):
    _, result = trained
    one = OneLLM.from_pretrained(model_dir, adapter=result.model_dir)
    two = OneLLM.from_pretrained(result.model_dir)
    s1, s2 = one.state_dict(), two.state_dict()
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    meta = json.loads((result.model_dir / "onellm_adapter.json").read_text())
    assert Path(meta["base_model"]) == model_dir.resolve()


def test_dry_run_counts_match_the_real_trainable_parameters(world, model_dir, tmp_path, capsys):
    recipe = lora_recipe(world, model_dir, tmp_path / "x", "trainable.upm=[image,audio]")
    meta = build_meta_model(recipe)
    real = OneLLM.from_pretrained(model_dir)
    from onellm.training.trainer import configure_trainable

    configure_trainable(real, recipe)
    assert meta.parameter_summary() == real.parameter_summary()
    est = estimate(recipe, device="cpu")
    trainable = sum(p.numel() for p in real.parameters() if p.requires_grad)
    assert est.optimizer == trainable * 8 and est.gradients == trainable * 4
    assert est.total > est.weights > 0
    # the CLI prints the same numbers and allocates nothing
    path = tmp_path / "r.yaml"
    import yaml

    from onellm.training.recipe import recipe_to_dict

    data = recipe_to_dict(recipe)
    data.pop("source")
    path.write_text(yaml.safe_dump(data))
    assert main(["train", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    last = json.loads(out.strip().splitlines()[-1])
    assert last["trainable"] == trainable and not (tmp_path / "x").exists()


def test_7b_lora_recipe_fits_one_24gb_gpu():
    recipe = load_recipe(ROOT / "train/recipes/instruction_lora.yaml",
                         ["model=" + str(ROOT / "tests/data/onellm7b_config_dir")])
    est = estimate(recipe, device="cuda", world_size=1)
    assert 14 * 2**30 < est.total < 24 * 2**30  # what the recipe header promises
    trainable = sum(t for t, _ in est.parts.values())
    assert 30e6 < trainable < 50e6  # rank 16 on all projections of LLaMA-2-7B: ~40M
