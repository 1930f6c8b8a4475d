"""The in-memory input cache: bounded by bytes, used only where a load draws no augmentation, same samples."""
import pytest
import torch

from onellm.data.datasets import AlignmentDataset
from onellm.data.input_cache import InputCache
from onellm.data.manifest import read_manifest
from onellm.modalities import get as modality_definition
from onellm.processing import OneLLMProcessor

from helpers import synth_world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return synth_world(tmp_path_factory, 3, 5, "video,audio,imu,image")


def test_cache_keeps_the_most_recently_used_tensors_within_its_byte_budget():
    cache = InputCache(max_bytes=2500)
    for k in "abc":
        cache.put(k, torch.zeros(250))  # 1000 bytes each
    assert "a" not in cache and "b" in cache and "c" in cache and cache.bytes == 2000
    assert cache.get("b") is not None  # b becomes the most recent: d pushes c out, not b
    cache.put("d", torch.zeros(250))
    assert "b" in cache and "c" not in cache and "d" in cache and cache.bytes == 2000
    cache.put("big", torch.zeros(1000))  # 4000 bytes: over the whole budget, never kept
    assert "big" not in cache and len(cache) == 2
    assert cache.get("zzz") is None and (cache.hits, cache.misses) == (1, 1)
    with pytest.raises(ValueError):
        InputCache(-1)


def test_loaders_without_augmentation_are_the_ones_cached_in_training():
    assert [m for m in ("image", "video", "audio", "point", "depth", "normal", "imu", "fmri")
            if not modality_definition(m).loader.augments] == ["video", "imu", "fmri"]


@pytest.mark.parametrize("train", [True, False])
def test_cached_dataset_loads_each_unaugmented_input_once_and_gives_the_same_samples(world, model_dir, train,
                                                                                        monkeypatch):
    processor = OneLLMProcessor.from_pretrained(model_dir)
    records = read_manifest(world / "alignment.jsonl")
    plain = AlignmentDataset(records, processor, train=train, seed=3)
    reference = [plain[i] for i in range(len(records))]

    calls = []
    load = processor.load_input
    monkeypatch.setattr(processor, "load_input", lambda m, s, train=False: calls.append(m) or load(m, s, train))
    cached = AlignmentDataset(records, processor, train=train, seed=3, input_cache=InputCache(64 * 2**20))
    for _ in range(2):  # two epochs over the same indices: the same augmentation draws as `plain`
        for i, ref in enumerate(reference):
            item = cached[i]
            assert item.input_ids == ref.input_ids and len(item.inputs) == len(ref.inputs) == 1
            assert item.inputs[0][0] == ref.inputs[0][0]
            assert torch.equal(item.inputs[0][1], ref.inputs[0][1])
    per_modality = {m: calls.count(m) for m in ("video", "audio", "imu", "image")}
    if train:  # augmented modalities are loaded again in every epoch, the others once
        assert per_modality == {"video": 3, "audio": 6, "imu": 3, "image": 6}
    else:  # eval loads draw nothing: everything is loaded once
        assert per_modality == {"video": 3, "audio": 3, "imu": 3, "image": 3}
    assert cached.input_cache.hits == (6 if train else 12)


def test_recipe_input_cache_mb_gives_every_manifest_dataset_one_shared_cache(world, model_dir, tmp_path):
    import yaml

    from onellm.training import load_recipe
    from onellm.training.data import build_train_data

    def load_recipe_dict(data):
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
        return load_recipe(tmp_path / "r.yaml")

    processor = OneLLMProcessor.from_pretrained(model_dir)
    base = {"model": str(model_dir), "output_dir": "unused", "max_steps": 1,
            "datasets": [{"manifest": str(world / "alignment.jsonl"), "modalities": ["video"]},
                         {"manifest": str(world / "alignment.jsonl"), "modalities": ["imu"]}]}
    data = build_train_data(load_recipe_dict({**base, "input_cache_mb": 3}), processor, 0, 1, log=lambda m: None)
    caches = {id(ds.input_cache) for ds in data.datasets}
    assert len(caches) == 1 and data.datasets[0].input_cache.max_bytes == 3 * 2**20
    data = build_train_data(load_recipe_dict(base), processor, 0, 1, log=lambda m: None)
    assert all(ds.input_cache is None and ds.augment is True for ds in data.datasets)
    data = build_train_data(load_recipe_dict({**base, "augment": ["image", "point"]}), processor, 0, 1,
                            log=lambda m: None)
    assert all(ds.augment == {"image", "point"} for ds in data.datasets)
    with pytest.raises(Exception, match="augment"):
        load_recipe_dict({**base, "augment": ["smell"]})


def test_augment_selection_loads_the_other_modalities_as_in_eval(world, model_dir):
    processor = OneLLMProcessor.from_pretrained(model_dir)
    records = read_manifest(world / "alignment.jsonl")
    audio = [i for i, r in enumerate(records) if r.modality_key == "audio"]
    image = [i for i, r in enumerate(records) if r.modality_key == "image"]
    evaluation = AlignmentDataset(records, processor, train=False)
    augmented = AlignmentDataset(records, processor, train=True, seed=3)
    chosen = AlignmentDataset(records, processor, train=True, seed=3, augment=["image"],
                              input_cache=InputCache(2**20))
    assert [chosen.augments(m) for m in ("image", "audio", "video")] == [True, False, False]
    for i in audio:  # SpecAugment off: the eval spectrogram, and now cacheable
        assert torch.equal(chosen[i].inputs[0][1], evaluation[i].inputs[0][1])
        assert not torch.equal(augmented[i].inputs[0][1], evaluation[i].inputs[0][1])
    for i in image:  # still randomly cropped, the same draws as with every modality augmented
        assert torch.equal(chosen[i].inputs[0][1], augmented[i].inputs[0][1])
        assert not torch.equal(chosen[i].inputs[0][1], evaluation[i].inputs[0][1])
    assert len(chosen.input_cache) == len(audio)
    assert not AlignmentDataset(records, processor, train=True, augment=False).augments("image")
