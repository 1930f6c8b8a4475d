"""Frozen-feature cache: exact loss/gradients, resumable writing."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from onellm import OneLLM
from onellm.cli import main
from onellm.data.datasets import AlignmentDataset, Collator
from onellm.data.manifest import read_manifest
from onellm.processing import OneLLMProcessor
from onellm.features import FeatureStore, cache_features, cacheable, feature_key

from helpers import synth_world

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return synth_world(tmp_path_factory, 5, 4, "image,video,depth,normal,audio")


def test_cached_features_give_exactly_the_same_loss_and_gradients(world, model_dir, tmp_path):
    model = OneLLM.from_pretrained(model_dir)
    model.set_trainable(llm=False)  # alignment: the UPM trains, CLIP and the LLM are frozen
    records = read_manifest(world / "alignment.jsonl")
    counts = cache_features(model, records, tmp_path / "cache", batch_size=3, num_workers=0, progress=False)
    frozen_path = [r for r in records if cacheable(r.inputs[0].modality)]
    assert counts["new"] == len(frozen_path) == 20 and counts["failed"] == 0
    store = FeatureStore(tmp_path / "cache")
    assert all(feature_key(r.id, 0) in store for r in frozen_path)
    assert not any(feature_key(r.id, 0) in store for r in records if r not in frozen_path)  # audio: not frozen-path
    processor = OneLLMProcessor.from_pretrained(model_dir)
    plain = AlignmentDataset(records, processor, train=False)
    cached = AlignmentDataset(records, processor, train=False, feature_store=store)
    collate = Collator(processor)
    for key in ("image", "video", "depth", "normal"):
        idx = [i for i, r in enumerate(records) if r.modality_key == key][:3]
        b_plain, b_cached = collate([plain[i] for i in idx])["inputs"], collate([cached[i] for i in idx])["inputs"]
        assert f"{key}_clip_features" in b_cached and f"{key}_values" not in b_cached
        grads = []
        for batch in (b_plain, b_cached):
            model.zero_grad(set_to_none=True)
            out = model(**batch)
            out.loss.backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            grads[-1]["loss"] = out.loss.detach()
        assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
        for n in grads[0]:
            torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5)


def test_mixed_raw_and_cached_inputs_in_one_batch(world, model_dir, tmp_path):
    """A sample missing from the cache falls back to its raw input; blocks still land in reading order."""
    model = OneLLM.from_pretrained(model_dir)
    records = [r for r in read_manifest(world / "alignment.jsonl") if r.modality_key == "image"][:4]
    cache_features(model, records[:2], tmp_path / "c", num_workers=0, progress=False)
    processor = OneLLMProcessor.from_pretrained(model_dir)
    ds = AlignmentDataset(records, processor, train=False, feature_store=FeatureStore(tmp_path / "c"))
    batch = Collator(processor)([ds[i] for i in range(4)])["inputs"]
    assert batch["image_cached"].tolist() == [True, True, False, False]  # reading order: cached ones first here
    assert batch["image_clip_features"].shape[0] == 2 and batch["image_values"].shape[0] == 2
    ref = Collator(processor)([AlignmentDataset(records, processor, train=False)[i] for i in range(4)])["inputs"]

    def embeds(b):
        return model.embed_inputs(b["input_ids"], {k: v for k, v in b.items() if k.startswith("image_")})

    with torch.no_grad():
        torch.testing.assert_close(embeds(batch), embeds(ref), atol=1e-6, rtol=1e-5)


def test_cache_features_of_chosen_modalities_only(world, model_dir, tmp_path, capsys):
    manifest = str(world / "alignment.jsonl")
    base = ["cache-features", "--model", str(model_dir), "--manifest", manifest, "--num-workers", "0"]
    assert main(base + ["--out", str(tmp_path / "v"), "--modalities", "video"]) == 0
    store = FeatureStore(tmp_path / "v")
    records = read_manifest(world / "alignment.jsonl")
    assert sorted(r.modality_key for r in records if feature_key(r.id, 0) in store) == ["video"] * 5
    for bad, says in ((["audio"], "trainable tokenizer"), (["smell"], "unknown modality")):
        with pytest.raises(SystemExit) as exc:
            main(base + ["--out", str(tmp_path / "x"), "--modalities", *bad])
        assert says in str(exc.value)


def test_cache_resumes_after_a_kill_without_losing_or_duplicating(world, model_dir, tmp_path):
    out = tmp_path / "cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "onellm.cli", "cache-features", "--model", str(model_dir), "--manifest",
           str(world / "alignment.jsonl"), "--out", str(out), "--shard-size", "2", "--batch-size", "1",
           "--num-workers", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "index.json").exists() and len(json.loads((out / "index.json").read_text())["entries"]) >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = json.loads((out / "index.json").read_text())["entries"]
    assert 4 <= len(partial) < 20, "the run should have been killed mid-way"
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    entries = json.loads((out / "index.json").read_text())["entries"]
    assert len(entries) == 20 and set(partial) <= set(entries)
    assert all(entries[k] == partial[k] for k in partial)  # finished shards are kept, not redone
    from safetensors import safe_open

    stored = [k for f in sorted(out.glob("shard-*.safetensors")) for k in safe_open(str(f), "pt").keys()
              if entries.get(k) == f.name]
    assert sorted(stored) == sorted(entries)  # every feature exactly once
    fresh = tmp_path / "fresh"
    cache_features(OneLLM.from_pretrained(model_dir), read_manifest(world / "alignment.jsonl"), fresh,
                   num_workers=0, progress=False)
    a, b = FeatureStore(out), FeatureStore(fresh)
    for k in entries:
        torch.testing.assert_close(a.get(k), b.get(k))
