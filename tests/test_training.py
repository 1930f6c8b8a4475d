"""Training: recipes, a tiny stage I that learns, the stage progression, DeepSpeed on 2 CPU ranks, exact resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from onellm.cli import main
from onellm.training import load_recipe, train
from onellm.training.optim import lr_at
from onellm.training.recipe import ScheduleSpec
from onellm.training.trainer import NonFiniteLossError

from helpers import synth_world

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "train" / "recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return synth_world(tmp_path_factory, 6, 0)


def tiny(name, world, model_dir, out, *overrides):
    base = [f"model={model_dir}", f"output_dir={out}", "num_workers=0", "report_to=[]", "log_every=100",
            "max_steps=30", "save_every=15"]  # the tests' size (the recipes' own is the quickstart's)
    recipe = load_recipe(ROOT / "train" / "recipes" / name, base + list(overrides))
    for ds in recipe.datasets:
        ds.manifest = str(world / Path(ds.manifest).name)
    return recipe


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_parses(path):
    recipe = load_recipe(path)
    assert recipe.datasets and (recipe.max_steps or recipe.epochs)
    header = path.read_text().splitlines()[0]
    assert header.startswith("#")  # a header comment that says what it is / how to launch it
    assert "train.py" in path.read_text() or "onellm train" in path.read_text()
    if recipe.deepspeed:
        assert (ROOT / recipe.deepspeed).is_file()


def test_overrides_and_validation(tmp_path):
    r = load_recipe(RECIPES[0], ["optimizer.lr=1e-4", "trainable.llm=full", "datasets.0.repeat=2", "max_steps=7"])
    assert r.optimizer.lr == 1e-4 and r.trainable.llm == "full" and r.datasets[0].repeat == 2 and r.max_steps == 7
    with pytest.raises(ValueError, match="unknown recipe keys"):
        load_recipe(RECIPES[0], ["learning_rate=3"])
    with pytest.raises(ValueError, match="unknown modality"):
        load_recipe(RECIPES[0], ["trainable.upm=[smell]"])


def test_cpu_optimizer_is_the_multi_tensor_adamw_with_the_default_updates_bits():
    from onellm.training.optim import build_optimizer, param_groups
    from onellm.training.recipe import OptimizerSpec

    def run(foreach_default: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.LayerNorm(64), torch.nn.Linear(64, 8))
        spec = OptimizerSpec(lr=2e-3, weight_decay=0.1)
        if foreach_default:  # what torch does on CPU when nobody asks: one Python update per parameter
            opt = torch.optim.AdamW(param_groups(model, spec.weight_decay), lr=spec.lr, betas=tuple(spec.betas),
                                    eps=spec.eps)
        else:
            opt = build_optimizer(model, spec, "cpu")
        assert all(g["foreach"] is (None if foreach_default else True) for g in opt.param_groups)
        gen = torch.Generator().manual_seed(1)
        for step in range(20):
            model.zero_grad()
            model(torch.randn(16, 40, generator=gen)).square().mean().backward()
            for group in opt.param_groups:
                group["lr"] = spec.lr * (1 - step / 40)
            opt.step()
        return model.state_dict()

    fast, default = run(False), run(True)
    assert len(build_optimizer(torch.nn.Linear(2, 2), OptimizerSpec(weight_decay=0.1), "cpu").param_groups) == 2
    assert all(torch.equal(fast[k], default[k]) for k in fast)


def test_schedule_warmup_then_cosine_to_min():
    s = ScheduleSpec(warmup_steps=10, decay_steps=110)
    lrs = [lr_at(i, 1.0, 0.1, s, 200) for i in range(200)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.55, abs=0.01)  # half way down the cosine
    assert lrs[110] == pytest.approx(0.1) and lrs[199] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_tiny_stage1_learns_and_touches_only_trainable_parts(world, model_dir, tmp_path):
    recipe = tiny("tiny_stage1_image.yaml", world, model_dir, tmp_path / "s1")
    before = load_file(str(model_dir / "model.safetensors"))
    result = train(recipe, log=lambda *_: None)
    assert result.steps == 30
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    # a random frozen LLM limits how far a prefix can move the loss (~0.13 nats here); it must still fall
    # clearly, and steadily rather than by one lucky batch
    assert last < first - 0.1, result.losses
    assert max(result.losses[-10:]) < min(result.losses[:3]), result.losses
    after = load_file(str(result.model_dir / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    trainable_prefixes = ("upm.resample_layers.",) + tuple(
        f"upm.{p}.image" for p in ("resample_tokens", "clip_proj1", "clip_proj2", "routers", "start_tag", "end_tag"))
    assert changed and all(k.startswith(trainable_prefixes) for k in changed)
    assert any(k.startswith("upm.resample_layers.") for k in changed)
    assert not any(k.startswith(("llm.", "encoder.", "tokenizers.")) for k in changed)  # frozen: bit-identical
    summary = json.loads((tmp_path / "s1" / "train_summary.json").read_text())
    assert summary["steps"] == 30 and summary["ranks_agree"]
    metrics = [json.loads(l) for l in (tmp_path / "s1" / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 30 and {"loss", "lr", "grad_norm", "samples_per_s", "tokens_per_s", "peak_memory_gb",
                                   "loss/image"} <= set(metrics[0])
    ckpts = sorted(p.name for p in (tmp_path / "s1" / "checkpoints").iterdir())
    assert ckpts == ["step-000015", "step-000030"]


def test_worker_count_does_not_change_the_run(world, model_dir, tmp_path):
    """Per-sample seeding: augmentations and order are the same in the main process and in 2 workers."""
    losses = {}
    for workers in (0, 2):
        recipe = tiny("tiny_stage2_video_audio_point.yaml", world, model_dir, tmp_path / f"w{workers}",
                      f"num_workers={workers}", "max_steps=6", "save_every=6")
        losses[workers] = train(recipe, log=lambda *_: None).losses
    assert len(losses[0]) == 6 and losses[0] == losses[2]


def test_progression_stage1_to_instruction(world, model_dir, tmp_path):
    prev = model_dir
    stages = ["tiny_stage1_image.yaml", "tiny_stage2_video_audio_point.yaml",
              "tiny_stage3_depth_normal_imu_fmri.yaml", "tiny_instruction.yaml"]
    outputs = []
    for k, name in enumerate(stages):
        logs = []
        recipe = tiny(name, world, prev, tmp_path / f"stage{k}", "max_steps=3", "save_every=3")
        result = train(recipe, log=logs.append)
        if k in (1, 2):  # the new modalities start from the image UPM parts of the previous stage
            assert any("init_from_image" in l for l in logs)
        before, after = load_file(str(prev / "model.safetensors")), load_file(str(result.model_dir / "model.safetensors"))
        changed = {n for n in before if not torch.equal(before[n], after[n])}
        if name == "tiny_instruction.yaml":
            assert changed and all(n.startswith("llm.") for n in changed)  # only the LLM trains
        else:
            assert changed and not any(n.startswith("llm.") for n in changed)
        if k == 1:  # video's UPM parts started as a copy of stage I's image ones
            assert "upm.start_tag.video" in changed and "upm.resample_tokens.point" in changed
        outputs.append(result.model_dir)
        prev = result.model_dir
    from onellm import OneLLM

    from onellm.processing import OneLLMProcessor

    final = OneLLM.from_pretrained(outputs[-1])
    processor = OneLLMProcessor.from_pretrained(outputs[-1])  # every stage's model directory has its processor
    assert processor.config == final.config and len(processor.text) == final.config.llm.vocab_size


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(world, model_dir, tmp_path,
                                                                          monkeypatch):
    from onellm.model.onellm import OneLLM

    forward, calls = OneLLM.forward, []

    def diverging(self, **kw):  # the 5th forward diverges
        out = forward(self, **kw)
        calls.append(1)
        if len(calls) >= 5:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(OneLLM, "forward", diverging)
    recipe = tiny("tiny_stage1_image.yaml", world, model_dir, tmp_path / "nan", "max_steps=8", "save_every=2")
    with pytest.raises(NonFiniteLossError, match="last good checkpoint") as err:
        train(recipe, log=lambda *_: None)
    assert "step 4" in str(err.value)
    ckpts = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert ckpts == ["step-000002", "step-000004"]  # complete ones only, nothing from the diverged step
    assert not (tmp_path / "nan" / "model").exists()


def write_recipe(recipe_path, world, model_dir, out, **extra):
    import yaml

    data = {"model": str(model_dir), "output_dir": str(out), "task": "alignment",
            "datasets": [{"manifest": str(world / "alignment.jsonl"),
                          "modalities": ["image", "audio", "point", "imu", "fmri"]}],
            "trainable": {"upm": True, "tokenizers": True, "llm": "frozen"},
            "optimizer": {"lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.01}, "schedule": {"warmup_steps": 2},
            "micro_batch": 2, "accumulation": 2, "max_steps": 6, "precision": "fp32", "num_workers": 1,
            "save_every": 3, "log_every": 1, "report_to": [], **extra}
    recipe_path.write_text(yaml.safe_dump(data))
    return recipe_path


def launch(*args, env_extra=None, **kw):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR",
                                                  str(Path.home() / ".cache" / "onellm-torch-extensions")),
           "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen(list(args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kw)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_two_cpu_ranks_agree(world, model_dir, tmp_path, stage):
    out = tmp_path / stage
    recipe = write_recipe(tmp_path / "r.yaml", world, model_dir, out, deepspeed=str(ROOT / f"train/ds/{stage}.json"),
                          **({"trainable": {"upm": True, "tokenizers": True, "llm": "full"}} if stage == "zero3" else {}))
    port = str(29600 + (stage == "zero3"))
    proc = launch(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                  "train/train.py", str(recipe))
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-4000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 6
    assert summary["ranks_agree"], summary["rank_checksums"]
    assert (out / "checkpoints" / "step-000006" / "ds").is_dir()
    from onellm import OneLLM

    OneLLM.from_pretrained(out / "model")  # the gathered final weights load strictly


def test_resume_after_kill_equals_uninterrupted_run(world, model_dir, tmp_path):
    straight = write_recipe(tmp_path / "a.yaml", world, model_dir, tmp_path / "a", save_every=100)
    proc = launch(sys.executable, "-m", "onellm.cli", "train", str(straight))
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    killed = write_recipe(tmp_path / "b.yaml", world, model_dir, tmp_path / "b", save_every=3)
    proc = launch(sys.executable, "-m", "onellm.cli", "train", str(killed))
    ckpt = tmp_path / "b" / "checkpoints" / "step-000003"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpt / "state.json").exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "model").exists(), "killed too late: the run had finished"
    proc = launch(sys.executable, "-m", "onellm.cli", "train", str(killed))  # resume=auto
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "resumed from" in log, log[-3000:]
    a, b = load_file(str(tmp_path / "a/model/model.safetensors")), load_file(str(tmp_path / "b/model/model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:  # tolerance: bit-identical on CPU (same data order, per-sample augmentation seeds, RNG, optimizer)
        assert torch.equal(a[k], b[k]), k
    la = json.loads((tmp_path / "a/train_summary.json").read_text())["losses"]
    lb = [json.loads(l)["loss"] for l in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert [round(x, 5) for x in la[3:]] == [round(x, 5) for x in lb[-3:]]
