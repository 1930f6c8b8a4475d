"""`onellm quickstart`: a reduced run learns image and video for real; a fixed seed reproduces the table."""
import json

import torch

from onellm.config import OneLLMConfig
from onellm.quickstart import REDUCED, Scale, run_quickstart
from onellm.quickstart.pretrain import clip_zero_shot_accuracy, pretrain_clip


def test_reduced_quickstart_beats_chance_clearly(tmp_path):
    # its run time (under three minutes on 2 quiet cores) is reported in results["timings"], not asserted here
    results = run_quickstart(tmp_path / "qs", seed=0, scale=REDUCED, log=lambda *_: None)
    assert set(results["timings"]) >= {"synthetic world", "init", "cache CLIP features", "train stage1",
                                       "train stage2"}
    final = results["stages"]["stage2"]
    for modality, margin in (("image", 0.25), ("video", 0.2), ("point", 0.4)):
        acc, chance = final[modality]["caption_acc"] / 100, final[modality]["chance"] / 100
        assert acc >= chance + margin, (modality, acc, chance)
    # the geometric attributes, not only colour (chance 25 % each; measured: point shape 62 %, video motion 42 %,
    # 24 captions each; the full run: 77-98 % and 50-77 %)
    assert final["point"]["attributes"]["shape"] >= 25 + 30, final["point"]
    assert final["video"]["attributes"]["motion"] >= 25 + 15, final["video"]
    stage1 = results["stages"]["stage1"]["image"]
    assert stage1["caption_acc"] > stage1["chance"] + 20  # stage I alone already beats chance on image
    report = (tmp_path / "qs" / "report.md").read_text()
    assert "## What each stage added" in report and "| image |" in report and "loss_curves.png" in report
    assert "| image-test-00000-caption | Describe this image. |" in report  # examples show their prompt
    assert (tmp_path / "qs" / "loss_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "qs" / "results.json").read_text())["stages"] == results["stages"]
    for stage in ("stage1", "stage2"):  # every stage reads the videos' CLIP features the quickstart cached
        recipe = json.loads((tmp_path / "qs" / stage / "recipe.json").read_text())
        assert recipe["feature_cache"] == str(tmp_path / "qs" / "features")


def test_video_features_cached_for_the_stages_equal_clip_on_the_frames(tmp_path, model_dir):
    """The quickstart encodes every training video once with the frozen CLIP; the stages read those features."""
    from onellm import OneLLM
    from onellm.data.loaders import load_modality
    from onellm.data.manifest import read_manifest
    from onellm.data.synth import generate_world
    from onellm.features import FeatureStore, feature_key
    from onellm.quickstart import cache_clip_features

    generate_world(tmp_path / "world", 3, 0, "train", modalities=["video", "image"])
    out = cache_clip_features(model_dir, tmp_path / "world" / "train", tmp_path / "features", num_workers=0)
    store, model = FeatureStore(out), OneLLM.from_pretrained(model_dir)
    records = read_manifest(tmp_path / "world" / "train" / "alignment.jsonl")
    videos = [r for r in records if r.modality_key == "video"]
    assert len(videos) == 3 and not any(feature_key(r.id, 0) in store for r in records if r not in videos)
    for r in videos:
        frames = load_modality("video", r.inputs[0].as_source(), config=model.config)
        with torch.no_grad():
            expected = model.encode_clip("video", frames[None])[0]
        torch.testing.assert_close(store.get(feature_key(r.id, 0)).float(), expected, atol=1e-6, rtol=1e-5)
    assert cache_clip_features(model_dir, _image_only(tmp_path), tmp_path / "f2", 0) is None


def _image_only(tmp_path):
    from onellm.data.synth import generate_world

    generate_world(tmp_path / "w2", 2, 0, "train", modalities=["image"])
    return tmp_path / "w2" / "train"


def test_fixed_seed_reproduces_the_table(tmp_path):
    micro = Scale(train_per_modality=16, test_per_modality=6, lm_steps=20, clip_steps=20,
                  stage_steps={"stage1": 15}, stages=("stage1",), modalities=("image",))
    a = run_quickstart(tmp_path / "a", seed=7, scale=micro, log=lambda *_: None, num_workers=1)
    b = run_quickstart(tmp_path / "b", seed=7, scale=micro, log=lambda *_: None, num_workers=1)
    assert a["stages"] == b["stages"]
    assert a["curves"] == b["curves"]  # every loss of every stage, bit for bit


def test_scene_photos_teach_the_stand_in_clip_3d_shapes():
    """Without the 3-D scene photos the tiny CLIP has never seen a sphere, cube or cone: on scene photos it
    can only get the colour right (1/3 of the 12 classes; measured 0.39 flat vs 0.77 with photos, 150 steps)."""
    config = OneLLMConfig.preset("quickstart")
    flat, _ = pretrain_clip(config, 150, log=lambda *_: None)
    scenes, _ = pretrain_clip(config, 150, log=lambda *_: None, scene_photos=4)
    acc_flat = clip_zero_shot_accuracy(flat, config, n=96, scenes=True)
    acc_scenes = clip_zero_shot_accuracy(scenes, config, n=96, scenes=True)
    assert acc_scenes >= 0.6 and acc_scenes >= acc_flat + 0.25, (acc_flat, acc_scenes)
    # the 2-D shape images are learned as well as without the photos (0.53 vs 0.52 at this short length)
    assert clip_zero_shot_accuracy(scenes, config, n=96) >= clip_zero_shot_accuracy(flat, config, n=96) - 0.1


def test_only_pretrain_makes_the_quickstarts_starting_model(tmp_path):
    """`onellm quickstart --only pretrain --out DIR` writes the model directory the full quickstart starts its stages
    from, bit for bit (the step-by-step progression in the README starts there)."""
    from safetensors.torch import load_file

    from onellm.quickstart import pretrain_stand_ins

    micro = Scale(train_per_modality=4, test_per_modality=2, lm_steps=5, clip_steps=5, clip_scene_photos=1,
                  stage_steps={"stage1": 2}, stages=("stage1",), modalities=("image",))
    run_quickstart(tmp_path / "full", seed=3, scale=micro, log=lambda *_: None, num_workers=0)
    alone = pretrain_stand_ins(tmp_path / "init", tmp_path / "work", seed=3, scale=micro, log=lambda *_: None)
    a, b = load_file(str(tmp_path / "full" / "init" / "model.safetensors")), load_file(str(alone / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (alone / "processor_config.json").is_file()  # a model directory any stage recipe can start from


def test_attribute_hits_and_the_2x_chance_bar(tmp_path):
    """Per attribute: a caption scores only when it names the true value and no other value of that attribute."""
    from onellm.quickstart import attribute_hits, below_bar

    requests = [{"id": f"p{i}", "task": "caption", "inputs": [{"modality": "point", "path": "x.npy"}],
                 "attributes": {"shape": shape, "colour": "red"}} for i, shape in enumerate(["cube", "torus"] * 2)]
    requests.append({"id": "q0", "task": "qa", "inputs": [{"modality": "point", "path": "x.npy"}],
                     "attributes": {"shape": "cube", "colour": "red"}})  # not a caption: not counted
    answers = ["a red cube", "a red cube", "a red cube or a torus", "a blue torus", "cube"]
    (tmp_path / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps({"id": r["id"], "answer": a}) + "\n"
                                                        for r, a in zip(requests, answers)))
    hits = attribute_hits(tmp_path / "predictions.jsonl", tmp_path / "requests.jsonl")
    # shape: p0 cube right, p1 said cube for a torus, p2 named two shapes, p3 torus right -> 2 of 4
    assert hits == {"point": {"n": 4, "attributes": {"shape": 50.0, "colour": 75.0}}}
    # 4 shapes: 2 x chance = 50 % (met); 4 colours: 50 % (met); a two-valued attribute needs 100 %
    assert below_bar({"point": hits["point"]}) == []
    assert below_bar({"point": {"attributes": {"shape": 49.0, "colour": 80.0}}}) == ["point.shape 49 % < 50 %"]


def test_ablation_arms_train_what_they_claim(tmp_path):
    """`--ablation` plumbing on a micro run: arm (a) is stage II from the initial model without init_from_image, arm
    (b) one stage III model per new modality for exactly its share of the joint mix; the report gets the table.
    (What the ablations find is measured at full size: README, "Ablations".)"""
    from onellm.quickstart import STAGES, StageRunner, Timer, finished_run, recipes_dir
    from onellm.quickstart.ablation import ablation_table, modality_shares, run_ablations
    from onellm.quickstart.report import write_report
    from onellm.training import load_recipe

    micro = Scale(train_per_modality=4, test_per_modality=2, lm_steps=4, clip_steps=4, clip_scene_photos=0,
                  stage_steps={"stage1": 2, "stage2": 3, "stage3": 18, "instruction": 2}, fmri_voxels=256)
    out = tmp_path / "qs"
    base = run_quickstart(out, seed=1, scale=micro, log=lambda *_: None, num_workers=0)
    assert finished_run(out, 1) is not None and finished_run(out, 2) is None  # reused only for the same seed
    # stage III's repeats: image/video/audio/point/fmri 1, normal 2, depth 6, imu 6 (19 in all)
    recipe = load_recipe(recipes_dir() / STAGES[2][1])
    assert modality_shares(recipe, 38) == {"image": 2, "video": 2, "audio": 2, "point": 2, "fmri": 2, "normal": 4,
                                           "depth": 12, "imu": 12}
    timings: dict[str, float] = {}
    ablation = run_ablations(base, StageRunner(out, 1, 0, Timer(timings, lambda *_: None), micro.stage_steps),
                             log=lambda *_: None)
    assert ablation["joint"]["steps"] == {"depth": 6, "normal": 2, "imu": 6, "fmri": 1}
    for m, steps in ablation["joint"]["steps"].items():
        summary = json.loads((out / f"ablation-stage3-{m}-alone" / "train_summary.json").read_text())
        used = json.loads((out / f"ablation-stage3-{m}-alone" / "recipe.json").read_text())
        assert summary["steps"] == steps and summary["complete"]
        assert [ds["modalities"] for ds in used["datasets"]] == [[m]] and used["model"] == base["models"]["stage2"]
    random_arm = json.loads((out / "ablation-stage2-random-upm" / "train_summary.json").read_text())
    assert random_arm["steps"] == 3
    # arm (a) started from the initial model, not stage I's, and copies no image UPM
    used = json.loads((out / "ablation-stage2-random-upm" / "recipe.json").read_text())
    assert used["model"] == str(out / "init") and used["init_from_image"] is False
    assert set(ablation["image_first"]["scores"]) == {"image", "video", "audio", "point"}
    for part in ablation.values():  # the means are the arms' own numbers
        for arm in (0, 1):
            hits = [v for m in part["modalities"] if m != "image" or part is ablation["joint"]
                    for v in part["scores"][m][arm]["attributes"].values()]
            assert abs(part["mean"][arm] - sum(hits) / len(hits)) < 1e-9
    rows = ablation_table(ablation)
    assert any(r.startswith("| (b) joint vs one per modality | imu | turning |") for r in rows)
    base["ablation"] = ablation
    report = write_report(out, base, out / "world" / "test").read_text()
    assert "## Ablations (the paper's two, in miniature)" in report and ablation["joint"]["verdict"] in report


def test_ablation_verdict_follows_the_numbers():
    from onellm.quickstart.ablation import verdict

    assert verdict(70.0, 50.0, "Joint training").startswith("Joint training helps here, as in the paper")
    assert verdict(40.0, 50.0, "Joint training").startswith("Joint training hurts here, unlike the paper")
    assert verdict(52.0, 50.0, "Joint training").startswith("no clear difference at this scale")


def test_seeds_table_per_seed_and_finished_runs_reused(tmp_path, monkeypatch, capsys):
    """`--seeds`: one run per seed into OUT/seed-N, seeds.md with each attribute per seed against its 2x-chance bar
    and each stage's time; a finished full run of a seed already there is reused, not run again."""
    import argparse

    import onellm.quickstart as qs
    from onellm.quickstart import STAGES
    from onellm.quickstart.stages import below_bar

    calls = []

    def fake_run(out, seed, scale, num_workers=None):  # a finished run's results.json (what finished_run reads)
        calls.append(seed)
        models = {}
        for name in ("init", *(s[0] for s in STAGES)):
            (out / name).mkdir(parents=True, exist_ok=True)
            (out / name / "config.json").write_text("{}")
            models[name] = str(out / name)
        last = {"audio": {"caption_acc": 50.0, "qa_acc": 50.0, "chance": 33.3, "n": 48,
                          "attributes": {"pitch": 90.0 - 30 * seed, "pattern": 70.0}}}
        results = {"seed": seed, "stages": {s[0]: last for s in STAGES}, "models": models,
                   "timings": {"train stage2": 100.0 + seed, "train stage3": 200.0}, "below_2x_chance": below_bar(last)}
        (out / "results.json").write_text(json.dumps(results))
        return results

    monkeypatch.setattr(qs, "run_quickstart", fake_run)
    args = argparse.Namespace(out=str(tmp_path), only=None, seed=0, seeds=[0, 1], reduced=False, ablation=False,
                              num_workers=0)
    assert qs.run(args) == 0 and calls == [0, 1]
    table = (tmp_path / "seeds.md").read_text()
    assert "| audio | pitch | 33 | 67 | 90 | 60 |" in table and "| audio | pattern | 33 | 67 | 70 | 70 |" in table
    assert "seed 0: none; seed 1: audio.pitch 60 % < 67 %" in table
    assert "| train stage2 | 100 | 101 |" in table and "| total | 300 | 301 |" in table
    assert "seed 1: attributes under 2 x chance: audio.pitch 60 % < 67 %" in capsys.readouterr().out
    args.seeds = [1, 2]
    assert qs.run(args) == 0 and calls == [0, 1, 2]  # seed 1 reused
    assert "reusing the finished seed-1 quickstart" in capsys.readouterr().out


def test_stand_in_lm_corpus_puts_the_values_before_every_sequence(tmp_path):
    """The stand-in LM learns to read: every caption and chat has its attribute words in front (where the modality
    tokens will stand), chats ask the caption and each question in a random order (each question also first), and
    the tokenizer keeps the chat template's words whole (a short context between those tokens and the answer)."""
    import random

    from onellm.data.synth import world
    from onellm.data.template import SYSTEM
    from onellm.data.text import load_tokenizer, train_sentencepiece
    from onellm.quickstart.pretrain import language_corpus, tokenizer_corpus, world_conversations

    config = OneLLMConfig.preset("quickstart")
    tok = load_tokenizer(train_sentencepiece(tokenizer_corpus() * 4, tmp_path, vocab_size=config.llm.vocab_size))
    assert len(tok.encode(SYSTEM)) <= 40  # 101 pieces with a 512-piece vocabulary and the template weighted once
    assert all(len(tok.encode(v)) == 1 for m in world.ATTRIBUTES for vs in world.attributes(m).values() for v in vs
               if " " not in v)
    seqs = language_corpus(tok, seed=0, modalities=["audio"])
    combos = world.combinations("audio")
    assert len(seqs) == len(combos) * (len(world.caption_templates("audio")) + 3)
    vocab = world.attributes("audio")
    for seq in seqs:
        assert seq[0] == tok.bos_id
        words = tok.decode(seq[1:]).split()
        assert {words[0], words[1]} in [{p, q} for p in vocab["pitch"] for q in vocab["pattern"]], words[:4]
    chats = world_conversations(random.Random(0), ["audio"])
    requests = set(world.caption_requests("audio"))
    firsts = {turns[0]["value"] for turns, _ in chats}
    assert firsts & requests and set(world.QUESTIONS["audio"].values()) <= firsts
    for k in range(0, len(chats), 3):  # the first chat of a combination asks everything once
        turns, attrs = chats[k]
        asked = [t["value"] for t in turns[::2]]
        assert len(asked) == 3 and len(set(asked) & requests) == 1 and chats[k + 1][1] == attrs
