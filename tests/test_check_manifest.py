"""``onellm check-manifest``: every bad line with its number (exit 2), missing files without decoding, broken media
decoded by the real loaders in DataLoader workers and counted by reason (exit 1), a clean manifest exits 0."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from onellm.cli import main
from onellm.commands.check_manifest import check, reason_of

from helpers import write_input_files


def _manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("media")
    files = write_input_files(d)
    for k in range(3):
        (d / f"bad{k}.png").write_bytes(b"junk" * k)  # empty, then 4 and 8 bytes of junk
    np.save(d / "short.npy", np.zeros((3, 100), np.float32))  # an fMRI recording with too few voxels
    return d, files


def _broken_rows(files: dict) -> list[dict]:
    return [
        {"id": "img", "inputs": [files["image"]], "caption": "x"},                                    # line 1
        {"id": "b0", "inputs": [{"modality": "image", "path": "bad0.png"}], "caption": "x"},          # line 2
        {"id": "b1", "inputs": [{"modality": "image", "path": "bad1.png"}], "caption": "x"},          # line 3
        {"id": "av", "inputs": [files["image"], files["missing"]], "caption": "x"},                   # line 4
        {"id": "b2", "inputs": [{"modality": "image", "path": "bad2.png"}], "caption": "x"},          # line 5
        {"id": "m2", "inputs": [{"modality": "audio", "path": "gone.wav"}], "caption": "x"},          # line 6
        {"id": "fm", "inputs": [{"modality": "fmri", "path": "short.npy"}], "caption": "x"},          # line 7
        {"id": "dp", "inputs": [{"modality": "depth", "path": "depth.png", "rgb": "no_rgb.png"}], "caption": "x"},
        {"id": "ok", "inputs": [files[k] for k in ("depth", "audio", "point", "fmri", "imu")], "caption": "x"},
    ]


def test_a_clean_manifest_exits_0_with_and_without_media(media, capsys):
    d, files = media
    m = _manifest(d / "clean.jsonl", [{"id": f"r{k}", "inputs": [files[name]], "caption": "x"}
                                      for k, name in enumerate(("image", "depth", "audio", "point", "fmri", "imu"))])
    assert main(["check-manifest", str(m)]) == 0
    out = capsys.readouterr().out
    assert "6 records, every line valid; 6 inputs" in out and "6 ok, 0 failed" in out
    assert main(["check-manifest", str(m), "--media", "--num-workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "decoded: 6 ok, 0 failed" in out


def test_broken_media_are_counted_by_reason(media, tmp_path, capsys):
    d, files = media
    m = _manifest(d / "broken.jsonl", _broken_rows(files))
    failures = tmp_path / "failures.jsonl"
    assert main(["check-manifest", str(m), "--media", "--num-workers", "2", "--examples", "2",
                 "--failures", str(failures)]) == 1
    out = capsys.readouterr().out
    assert "9 records, every line valid; 14 inputs" in out and "decoded: 7 ok, 7 failed" in out
    assert "     3 x image: cannot decode image" in out
    assert "     2 x audio: file not found" in out
    assert "     1 x fmri: fMRI has N voxels but the model expects N" in out
    assert "     1 x depth: paired RGB image of <file> not found" in out
    assert out.count("... and 1 more") == 1  # three broken images, two examples shown
    assert f"line 2 (id b0): {d / 'bad0.png'}: cannot decode image" in out
    rows = [json.loads(l) for l in failures.read_text().splitlines()]
    assert [(r["line"], r["id"], r["modality"]) for r in rows] == [
        (2, "b0", "image"), (3, "b1", "image"), (4, "av", "audio"), (5, "b2", "image"), (6, "m2", "audio"),
        (7, "fm", "fmri"), (8, "dp", "depth")]
    assert rows[2]["path"] == str(d / "nowhere.wav") and rows[2]["reason"] == "audio: file not found"


def test_workers_do_not_change_the_result(media):
    d, files = media
    m = _manifest(d / "broken2.jsonl", _broken_rows(files))
    in_process, workers = check(m, media=True, num_workers=0), check(m, media=True, num_workers=2)
    assert [f.as_row() for f in in_process.failures] == [f.as_row() for f in workers.failures]
    assert len(workers.failures) == 7


def test_without_media_missing_files_are_found_without_decoding(media, capsys):
    d, files = media
    m = _manifest(d / "broken3.jsonl", _broken_rows(files))
    assert main(["check-manifest", str(m)]) == 1
    out = capsys.readouterr().out
    assert "11 ok, 3 failed" in out  # the undecodable images and the short fMRI need --media
    assert "     2 x audio: file not found" in out and "     1 x depth: rgb file not found" in out
    assert "cannot decode" not in out


def test_bad_lines_are_all_listed_with_their_numbers_and_exit_2(tmp_path, capsys):
    good = {"id": "a", "inputs": [], "caption": "x"}
    lines = [json.dumps(good), "{not json", json.dumps({"inputs": []}),
             json.dumps({"id": "b", "inputs": [{"modality": "smell", "path": "x.s"}]}), json.dumps(good)]
    lines += [json.dumps({"id": f"c{k}", "inputs": "nope"}) for k in range(60)]  # more than ManifestError shows
    m = tmp_path / "bad.jsonl"
    m.write_text("\n".join(lines) + "\n")
    assert main(["check-manifest", str(m), "--media"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{m}: 64 bad lines"
    assert out[1].startswith("  line 2: invalid JSON")
    assert out[2] == "  line 3: missing or empty 'id'"
    assert out[3].startswith("  line 4: b: inputs[0]: ") and "smell" in out[3]
    assert out[4] == "  line 5: duplicate id 'a' (first on line 1)"
    assert out[-1] == "  line 65: c59: 'inputs' must be a list"  # the 64th: none left out
    assert len(out) == 65


def test_missing_manifest_is_a_one_line_error(tmp_path, capsys):
    assert main(["check-manifest", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"onellm check-manifest: error: {tmp_path / 'none.jsonl'}: manifest not found"]


def test_a_loader_bug_is_one_failure_not_a_crash(media, monkeypatch):
    import onellm.modalities.loading as loading

    d, files = media
    m = _manifest(d / "bug.jsonl", [{"id": "a", "inputs": [files["image"]], "caption": "x"},
                                    {"id": "b", "inputs": [files["audio"]], "caption": "x"}])
    real = loading.load_modality

    def buggy(modality, source, **kw):
        if modality == "image":
            raise TypeError("boom")
        return real(modality, source, **kw)

    monkeypatch.setattr(loading, "load_modality", buggy)
    report = check(m, media=True, num_workers=0)
    assert [(f.id, f.reason) for f in report.failures] == [("a", "image: unexpected TypeError")]
    assert "boom" in report.failures[0].error


def test_reasons_group_equal_failures():
    assert reason_of("image", "cannot decode image: cannot identify image file '/d/x.png'") == \
        "image: cannot decode image"
    assert reason_of("imu", "IMU window holds 12 samples, fewer than 40") == "imu: IMU window holds N samples, fewer than N"
    assert reason_of("depth", "paired RGB image of /a/b.png not found") == "depth: paired RGB image of <file> not found"
    assert reason_of("fmri", "expected fMRI of shape (repetitions, 15724) or (15724,), got (3, 1.5e3)") == \
        "fmri: expected fMRI of shape (repetitions, N) or (N,), got (N, N)"
