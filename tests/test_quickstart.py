"""`onellm quickstart`: a reduced run learns image and audio for real; a fixed seed reproduces the table."""
import json
import time

from onellm.quickstart import REDUCED, Scale, run_quickstart


def test_reduced_quickstart_beats_chance_clearly(tmp_path):
    start = time.perf_counter()
    results = run_quickstart(tmp_path / "qs", seed=0, scale=REDUCED, log=lambda *_: None)
    elapsed = time.perf_counter() - start
    assert elapsed < 180, f"the reduced quickstart took {elapsed:.0f} s"
    final = results["stages"]["stage2"]
    for modality, margin in (("image", 0.25), ("audio", 0.2)):
        acc, chance = final[modality]["caption_acc"] / 100, final[modality]["chance"] / 100
        assert acc >= chance + margin, (modality, acc, chance)
    stage1 = results["stages"]["stage1"]["image"]
    assert stage1["caption_acc"] > stage1["chance"] + 20  # stage I alone already beats chance on image
    report = (tmp_path / "qs" / "report.md").read_text()
    assert "## What each stage added" in report and "| image |" in report and "loss_curves.png" in report
    assert "| image-test-00000-caption | Describe this image. |" in report  # examples show their prompt
    assert (tmp_path / "qs" / "loss_curves.png").stat().st_size > 1000
    assert json.loads((tmp_path / "qs" / "results.json").read_text())["stages"] == results["stages"]


def test_fixed_seed_reproduces_the_table(tmp_path):
    micro = Scale(train_per_modality=16, test_per_modality=6, lm_steps=20, clip_steps=20,
                  stage_steps={"stage1": 15}, stages=("stage1",), modalities=("image",))
    a = run_quickstart(tmp_path / "a", seed=7, scale=micro, log=lambda *_: None, num_workers=1)
    b = run_quickstart(tmp_path / "b", seed=7, scale=micro, log=lambda *_: None, num_workers=1)
    assert a["stages"] == b["stages"]
    assert a["curves"] == b["curves"]  # every loss of every stage, bit for bit
