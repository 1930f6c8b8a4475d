"""Training from webdataset tar shards: byte-level decoding equals the file loaders, img2dataset layouts read, a
stage-I run from shards equals the same run from the manifest, kill + resume (with another worker count) equals an
uninterrupted run, two ranks read every sample once per epoch, bad members are skipped and counted by name."""
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from onellm.config import OneLLMConfig
from onellm.data.datasets import FailedSample
from onellm.data.manifest import read_manifest
from onellm.data.shards import ShardIndex, ShardSet
from onellm.data.shards.decode import decode_input
from onellm.data.shards.members import assemble
from onellm.data.shards.writer import write_shards
from onellm.modalities import names as modality_names
from onellm.modalities.loading import load_modality

from helpers import synth_world

ROOT = Path(__file__).resolve().parents[1]
TINY = OneLLMConfig.preset("tiny")


@pytest.fixture(autouse=True)
def _index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONELLM_INDEX_CACHE", str(tmp_path / "index-cache"))  # never the user's home


@pytest.fixture(scope="module")
def every_modality(tmp_path_factory):
    """A world of every modality (3 each) and its shards (2 samples a shard)."""
    world = synth_world(tmp_path_factory, 3, 0)
    out = tmp_path_factory.mktemp("shards")
    report = write_shards(read_manifest(world / "alignment.jsonl"), out, max_count=2)
    return world, out, report


@pytest.fixture(scope="module")
def image_world(tmp_path_factory):
    """16 images + 16 audio clips; image shards of 6, 6, 4 samples."""
    world = synth_world(tmp_path_factory, 16, 1, modalities=["image", "audio"])
    out = tmp_path_factory.mktemp("image-shards")
    write_shards(read_manifest(world / "alignment.jsonl"), out, max_count=6, keys=["image"])
    return world, out / "image"


# -- decoding ---------------------------------------------------------------------------------------------------
def test_every_modality_decodes_from_bytes_exactly_like_its_file(every_modality):
    world, out, report = every_modality
    records = read_manifest(world / "alignment.jsonl")
    assert set(report.written) == set(modality_names()) and not report.skipped
    by_key = {}
    for r in records:
        by_key.setdefault(r.modality_key, []).append(r)
    for key, recs in by_key.items():
        shards = ShardSet.open(out / key)  # the folder's shards.json: counts without opening the tars
        assert len(shards) == len(recs) and shards.descriptor["modality"] == key
        for i, record in enumerate(recs):
            s, k, members = shards.read(i)
            sample = assemble(shards.name(s), k, members, key)
            assert sample.id == record.id and sample.caption == record.caption
            ref, item = record.inputs[0], sample.inputs[0]
            backends = ["auto", "av"] if key == "video" else [None]
            for train in (False, True):
                for backend in backends:
                    opts = {} if backend is None else {"backend": backend}
                    torch.manual_seed(i)
                    expected = load_modality(ref.modality, ref.as_source(), train=train, config=TINY, **opts)
                    torch.manual_seed(i)
                    got = decode_input(item.modality, item.member, {**item.options, **opts}, train=train,
                                       config=TINY)
                    assert torch.equal(expected, got), (key, i, train, backend)
    # the member layout: bare extensions where nothing else is needed, named ones for pairs and windows
    depth = ShardSet.open(out / "depth").read(0)[2]
    imu = ShardSet.open(out / "imu").read(0)[2]
    assert {"depth.png", "rgb.png", "txt", "json"} <= set(depth)
    assert {"npy", "timestamps.npy"} <= set(imu) and json.loads(imu["json"])["inputs"][0].keys() == {"start", "end"}
    assert "jpg" in ShardSet.open(out / "image").read(1)[2]


def _img2dataset_tar(path, images, caption_in_json=True):
    """A shard laid out as img2dataset writes it: <key>.jpg, <key>.txt, <key>.json (url, key, status, size ...)."""
    from PIL import Image

    with tarfile.open(path, "w") as tar:
        for n, (array, caption) in enumerate(images):
            key = f"{n:09d}"
            buf = io.BytesIO()
            Image.fromarray(array).save(buf, format="JPEG")
            meta = {"url": f"http://example.com/{n}.jpg", "key": key, "status": "success", "error_message": None,
                    "width": array.shape[1], "height": array.shape[0], "original_width": 640,
                    "original_height": 480, "exif": "{}", "sha256": "0" * 64}
            if caption_in_json:
                meta["caption"] = caption
            for ext, data in (("jpg", buf.getvalue()), ("txt", caption.encode()), ("json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_img2dataset_shards_read_as_written(tmp_path, processor):
    from onellm.data.shards.dataset import ShardDataset

    rng = np.random.default_rng(0)
    images = [(rng.integers(0, 255, (30 + n, 40, 3), dtype=np.uint8), f"a photo number {n}") for n in range(5)]
    for caption_in_json in (True, False):
        folder = tmp_path / f"laion-{caption_in_json}"
        folder.mkdir()
        _img2dataset_tar(folder / "00000.tar", images[:3], caption_in_json)
        _img2dataset_tar(folder / "00001.tar", images[3:], caption_in_json)
        (folder / "00000_stats.json").write_text("{}")  # img2dataset's side files are not shards
        shards = ShardSet.open(str(folder / "{00000..00001}.tar"))
        assert list(shards.sizes) == [3, 2]
        for key in ("auto", "txt"):
            ds = ShardDataset(shards, "image", processor, caption_key=key, train=False)
            items = [ds[i] for i in range(len(ds))]
            assert [it.id for it in items] == ["00000/000000000", "00000/000000001", "00000/000000002",
                                               "00001/000000000", "00001/000000001"]
            assert all(it.inputs[0][1].shape == (3, 32, 32) for it in items)
    # LAION-COCO style: the caption in a json field
    ds = ShardDataset(ShardSet.open(tmp_path / "laion-True"), "image", processor, caption_key="json.caption")
    assert not isinstance(ds[0], FailedSample)
    missing = ShardDataset(ShardSet.open(tmp_path / "laion-False"), "image", processor, caption_key="json.top_caption")
    bad = missing[1]
    assert isinstance(bad, FailedSample) and "00000.tar:000000001" in bad.error and "top_caption" in bad.error


@pytest.fixture(scope="module")
def processor(model_dir):
    from onellm.processing import OneLLMProcessor

    return OneLLMProcessor.from_pretrained(model_dir)


def _rewrite(src, dst, change):
    """Copy a tar, letting ``change(name, data)`` return new bytes (None drops the member)."""
    with tarfile.open(src) as a, tarfile.open(dst, "w") as b:
        for info in a:
            data = change(info.name, a.extractfile(info).read())
            if data is None:
                continue
            info.size = len(data)
            b.addfile(info, io.BytesIO(data))


def test_corrupt_members_become_named_failures_and_damaged_tars_keep_their_head(image_world, tmp_path, processor):
    from onellm.data.shards.dataset import ShardDataset

    _, shards_dir = image_world
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    first = sorted(shards_dir.glob("*.tar"))
    _rewrite(first[0], bad_dir / "000000.tar", lambda n, d: b"not a jpeg" if n == "000000001.jpg" else
             (json.dumps({"id": "no-caption"}).encode() if n == "000000002.json" else
              (None if n == "000000002.txt" else d)))
    ds = ShardDataset(ShardSet.open(bad_dir / "000000.tar"), "image", processor, caption_key="auto")
    items = [ds[i] for i in range(len(ds))]
    failed = [it for it in items if isinstance(it, FailedSample)]
    assert len(items) == 6 and len(failed) == 2
    assert "000000.tar:000000001.jpg" in failed[0].error and "cannot decode image" in failed[0].error
    assert "000000.tar:000000002" in failed[1].error and "caption" in failed[1].error
    assert all(f.modality_key == "image" for f in failed)
    # a tar cut in the middle of a member keeps the samples before it and says what was lost
    data = first[1].read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: len(data) // 2])
    index = ShardIndex.scan(cut)
    assert 0 < len(index) < 6 and index.problems and "truncated" in index.problems[0]
    with pytest.raises(ValueError, match="not an uncompressed tar"):
        gz = tmp_path / "x.tar"
        import gzip

        gz.write_bytes(gzip.compress(data))
        ShardIndex.scan(gz)


# -- training ---------------------------------------------------------------------------------------------------
def _recipe(model_dir, out, datasets, **extra):
    from onellm.training import load_recipe

    overrides = [f"model={model_dir}", f"output_dir={out}", "num_workers=0", "report_to=[]", "log_every=100",
                 f"datasets={json.dumps(datasets)}", "micro_batch=4", "save_every=100", "max_steps=30"]
    overrides += [f"{k}={json.dumps(v)}" for k, v in extra.items()]
    return load_recipe(ROOT / "train" / "recipes" / "tiny_stage1_image.yaml", overrides)


def test_stage1_from_shards_equals_the_run_from_the_manifest(image_world, model_dir, tmp_path):
    """Same samples in the same order by construction: shards keep the manifest's order, and shuffle_buffer=all
    draws the manifest sampler's permutation; decoding is bit-identical, so losses and weights are equal."""
    from onellm.training import train

    world, shards_dir = image_world
    runs = {}
    for name, entry in (("manifest", {"manifest": str(world / "alignment.jsonl"), "modalities": ["image"]}),
                        ("shards", {"shards": str(shards_dir), "shuffle_buffer": "all"})):
        runs[name] = train(_recipe(model_dir, tmp_path / name, [entry], max_steps=6), log=lambda *_: None)
    assert len(runs["manifest"].losses) == 6 and runs["manifest"].losses == runs["shards"].losses
    a = load_file(str(runs["manifest"].model_dir / "model.safetensors"))
    b = load_file(str(runs["shards"].model_dir / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_failed_shard_samples_are_counted_and_logged_with_shard_and_key(image_world, model_dir, tmp_path):
    from onellm.training import train

    _, shards_dir = image_world
    bad = tmp_path / "bad"
    bad.mkdir()
    for tar in sorted(shards_dir.glob("*.tar")):
        _rewrite(tar, bad / tar.name, lambda n, d: b"\x00" * 10 if n == "000000003.jpg" else d)
    logs = []
    result = train(_recipe(model_dir, tmp_path / "run", [{"shards": str(bad / "*.tar"), "modality": "image"}],
                           epochs=1, max_steps=None), log=logs.append)
    assert result.steps == 4 and result.skipped == 1  # 16 samples / 4 per batch; one bad member in the epoch
    assert any(line.startswith("skipped sample ") and "000000.tar:000000003.jpg: cannot decode image" in line
               for line in logs)


def _write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


def _launch(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu",
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT / "tests") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(list(args), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _mixed_recipe(path, world, shards_dir, model_dir, out, **extra):
    """Image shards (shuffle buffer of 5 samples over 3 shards) mixed with the audio of a manifest, repeated."""
    return _write(path, {
        "model": str(model_dir), "output_dir": str(out), "task": "alignment",
        "datasets": [{"shards": str(shards_dir), "shuffle_buffer": 5},
                     {"manifest": str(world / "alignment.jsonl"), "modalities": ["audio"], "repeat": 0.5}],
        "trainable": {"upm": True, "tokenizers": True, "llm": "frozen"},
        "optimizer": {"lr": 1e-3, "min_lr": 1e-4, "weight_decay": 0.01}, "schedule": {"warmup_steps": 2},
        "micro_batch": 2, "accumulation": 2, "max_steps": 6, "precision": "fp32", "num_workers": 0,
        "save_every": 3, "log_every": 1, "report_to": [], **extra})


def test_kill_and_resume_from_shards_with_other_workers_equals_an_uninterrupted_run(image_world, model_dir,
                                                                                     tmp_path):
    world, shards_dir = image_world
    env_cache = os.environ["ONELLM_INDEX_CACHE"]
    straight = _mixed_recipe(tmp_path / "a.yaml", world, shards_dir, model_dir, tmp_path / "a", save_every=100)
    proc = _launch(sys.executable, "-m", "onellm.cli", "train", str(straight))
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, log[-3000:]
    killed = _mixed_recipe(tmp_path / "b.yaml", world, shards_dir, model_dir, tmp_path / "b", num_workers=1)
    proc = _launch(sys.executable, "-m", "onellm.cli", "train", str(killed))
    ckpt = tmp_path / "b" / "checkpoints" / "step-000003"
    deadline = time.time() + 300
    while time.time() < deadline and not (ckpt / "state.json").exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "model").exists(), "killed too late: the run had finished"
    proc = _launch(sys.executable, "-m", "onellm.cli", "train", str(killed), "num_workers=2")  # resume=auto
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "resumed from" in log, log[-3000:]
    a, b = load_file(str(tmp_path / "a/model/model.safetensors")), load_file(str(tmp_path / "b/model/model.safetensors"))
    for k in a:  # bit-identical: same samples, same order, same augmentations, whatever the workers
        assert torch.equal(a[k], b[k]), k
    la = json.loads((tmp_path / "a/train_summary.json").read_text())["losses"]
    lb = [json.loads(line)["loss"] for line in (tmp_path / "b/metrics.jsonl").read_text().splitlines()]
    assert len(la) == 6 and [round(x, 6) for x in la[3:]] == [round(x, 6) for x in lb[-3:]]
    assert env_cache  # (the subprocesses index into the test's cache, not the user's home)


RECORDING_TRAIN = """
import json, os, sys
from onellm.training import data as D
from onellm.training import load_recipe, train

original = D.TrainData.loader

def loader(self, num_workers):
    rank = int(os.environ.get("RANK", 0))
    with open(os.path.join(sys.argv[2], f"ids-{rank}.jsonl"), "a") as f:
        for batch in original(self, num_workers):
            f.write(json.dumps(batch["ids"]) + "\\n")
            f.flush()
            yield batch

D.TrainData.loader = loader
train(load_recipe(sys.argv[1]))
"""


def test_two_ranks_read_every_sample_exactly_once_per_epoch(image_world, model_dir, tmp_path):
    world, shards_dir = image_world
    script = tmp_path / "record.py"
    script.write_text(RECORDING_TRAIN)
    # 16 image samples, 2 ranks x 4 = 8 per step: 2 steps an epoch; 4 steps = 2 epochs; 2 workers per rank
    recipe = _write(tmp_path / "r.yaml", {
        "model": str(model_dir), "output_dir": str(tmp_path / "out"), "task": "alignment",
        "datasets": [{"shards": str(shards_dir), "shuffle_buffer": 5}],
        "trainable": {"upm": ["image"], "tokenizers": False, "llm": "frozen"}, "micro_batch": 4,
        "max_steps": 4, "precision": "fp32", "num_workers": 2, "save_every": 100, "report_to": []})
    ids_dir = tmp_path / "ids"
    ids_dir.mkdir()
    proc = _launch(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29655",
                   str(script), str(recipe), str(ids_dir))
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-4000:]
    per_rank = [[json.loads(line) for line in (ids_dir / f"ids-{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [len(b) for b in per_rank] == [4, 4]
    all_ids = {r.id for r in read_manifest(world / "alignment.jsonl") if r.modality_key == "image"}
    epochs = []
    for epoch in (0, 1):
        seen = [i for rank in per_rank for batch in rank[2 * epoch: 2 * epoch + 2] for i in batch]
        assert len(seen) == 16 and set(seen) == all_ids  # each sample once, across ranks, per epoch
        epochs.append([i for batch in per_rank[0][2 * epoch: 2 * epoch + 2] for i in batch])
    assert epochs[0] != epochs[1]  # a new order every epoch
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_agree"]


# -- recipes ----------------------------------------------------------------------------------------------------
def test_recipe_entries_name_exactly_one_source_and_check_their_keys(tmp_path):
    from onellm.errors import RecipeError
    from onellm.training import load_recipe
    from onellm.training.recipe import recipe_to_dict

    base = ROOT / "train" / "recipes" / "tiny_stage1_image.yaml"
    r = load_recipe(base, ['datasets=[{shards: "laion/{00000..00009}.tar", modality: RGBD, caption_key: txt}, '
                           '{manifest: coco.jsonl, repeat: 2}]'])
    assert r.datasets[0].modality == "depth" and r.datasets[1].repeat == 2 and r.datasets[0].shuffle_buffer == 10_000
    assert "shards" not in recipe_to_dict(load_recipe(base))["datasets"][0]  # old fingerprints are unchanged
    for bad, message in ((["datasets=[{manifest: a.jsonl, shards: b.tar}]"], "exactly one"),
                         (["datasets=[{modality: image}]"], "exactly one"),
                         (["datasets=[{shards: b.tar, modality: smell}]"], "unknown modality"),
                         (["datasets=[{shards: b.tar, modalities: [image]}]"], "one 'modality'"),
                         (["datasets=[{manifest: a.jsonl, shuffle_buffer: 5}]"], "only for 'shards'"),
                         (["datasets=[{shards: b.tar, shuffle_buffer: 0}]"], "'all'"),
                         (["datasets=[{shards: b.tar, weight: 0.5, repeat: 2}]"], "not both"),
                         (["datasets=[{shards: b.tar}]", "task=instruction"], "alignment")):
        with pytest.raises(RecipeError, match=message):
            load_recipe(base, bad)


def test_weights_become_repeat_factors():
    from onellm.training.data import _repeats
    from onellm.training.recipe import DatasetSpec

    # next to a repeat entry (100 samples x 2), a weight is a share of the epoch: 200 / (1 - 0.2) = 250 samples
    specs = [DatasetSpec(manifest="a", repeat=2.0), DatasetSpec(shards="b", weight=0.2)]
    assert _repeats(specs, [100, 1000]) == pytest.approx([2.0, 0.05])
    # weights only: one epoch = all samples (1100), shared 3:1
    specs = [DatasetSpec(manifest="a", weight=3.0), DatasetSpec(shards="b", weight=1.0)]
    assert _repeats(specs, [100, 1000]) == pytest.approx([8.25, 0.275])


def test_shipped_shard_recipe_parses():
    from onellm.training import load_recipe

    recipe = load_recipe(ROOT / "train" / "recipes" / "stage1_image_shards.yaml")
    assert recipe.datasets[0].shards and recipe.datasets[0].modality == "image"


# -- data_prep/make_shards.py -----------------------------------------------------------------------------------
def _make_shards():
    spec = importlib.util.spec_from_file_location("data_prep_make_shards", ROOT / "data_prep" / "make_shards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_shards_writes_verifies_and_indexes(every_modality, tmp_path, capsys):
    world, _, _ = every_modality
    make = _make_shards()
    manifest = world / "alignment.jsonl"
    assert make.main(["--manifest", str(manifest), "--out", str(tmp_path / "s"), "--max-count", "2", "--verify",
                      "--verify-config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "wrote 24 samples" in out and "shards:" in out
    for key in modality_names():
        assert make.main(["--verify", str(tmp_path / "s" / key), "--verify-config", "tiny"]) == 0
        assert "ok 3, bad 0" in capsys.readouterr().out
    # byte-identical shards from the same manifest (fixed mtimes and owners)
    assert make.main(["--manifest", str(manifest), "--out", str(tmp_path / "t"), "--max-count", "2"]) == 0
    assert (tmp_path / "s/image/000000.tar").read_bytes() == (tmp_path / "t/image/000000.tar").read_bytes()
    # a damaged member is found, named and counted; the exit code says so
    _rewrite(tmp_path / "s/audio/000000.tar", tmp_path / "bad.tar",
             lambda n, d: b"RIFF" + b"\x00" * 8 if n.endswith(".wav") and n.startswith("000000001") else d)
    capsys.readouterr()
    assert make.main(["--verify", str(tmp_path / "bad.tar"), "--modality", "audio", "--verify-config", "tiny"]) == 1
    captured = capsys.readouterr()
    assert "ok 1, bad 1: cannot decode audio (1)" in captured.out and "bad.tar:000000001.wav" in captured.err
    # --index writes the sidecars of shards that have none (img2dataset output)
    _img2dataset_tar(tmp_path / "laion.tar", [(np.zeros((8, 8, 3), np.uint8), "black")])
    assert make.main(["--index", str(tmp_path / "laion.tar")]) == 0
    assert (tmp_path / "laion.tar.idx.npz").is_file() and "1 samples" in capsys.readouterr().out


def test_make_shards_verify_skips_unusable_inputs_by_reason(every_modality, tmp_path, capsys):
    world, _, _ = every_modality
    rows = [json.loads(line) for line in (world / "alignment.jsonl").read_text().splitlines()]
    video = next(r for r in rows if r["inputs"][0]["modality"] == "video")
    image = next(r for r in rows if r["inputs"][0]["modality"] == "image")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("I am not a picture")
    bad = [{**video, "id": "v-empty", "inputs": [{"modality": "video", "path": str(tmp_path / "empty.mp4")}]},
           {**image, "id": "i-text", "inputs": [{"modality": "image", "path": str(tmp_path / "text.jpg")}]}]
    for r in rows:
        for inp in r["inputs"]:
            for key in ("path", "rgb", "timestamps"):
                if key in inp:
                    inp[key] = str(world / inp[key])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows + bad) + "\n")
    make = _make_shards()
    assert make.main(["--manifest", str(manifest), "--out", str(tmp_path / "s"), "--verify",
                      "--verify-config", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "wrote 24 samples" in out
    assert "unusable video: empty file (0 bytes) (1)" in out and "unusable image: cannot decode image (1)" in out
