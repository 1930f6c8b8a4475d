"""data_prep/ scripts: tiny fixtures in each public format -> validated manifests with exact kept/skipped counts.

data_prep/ is a folder of scripts, not a package: each is imported from its file with importlib.
"""
import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from onellm.data.loaders.fmri import load_fmri
from onellm.data.loaders.imu import load_imu
from onellm.data.manifest import read_manifest

DATA_PREP = Path(__file__).resolve().parents[1] / "data_prep"
SCRIPTS = ("coco_captions", "image_text", "webvid", "wavcaps", "cap3d_pointllm", "ego4d_imu", "nsd_fmri",
           "llava_instruct")
_modules = {}


def script(name):
    if name not in _modules:
        spec = importlib.util.spec_from_file_location(f"data_prep_{name}", DATA_PREP / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[name] = module
    return _modules[name]


def run(capsys, name, *args):
    """Run a script's main; (kept, {reason: count}) parsed from its summary line."""
    assert script(name).main([str(a) for a in args]) == 0
    line = capsys.readouterr().out.strip().splitlines()[0]
    m = re.search(r"kept (\d+), skipped (\d+)(?:: (.*?))?(?:; adjusted: .*)?$", line)
    assert m, line
    reasons = dict((r, int(n)) for r, n in re.findall(r"(.+?) \((\d+)\)(?:, |$)", m.group(3) or ""))
    assert sum(reasons.values()) == int(m.group(2))
    return int(m.group(1)), reasons


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


def dump(path, obj):
    return touch(path, json.dumps(obj))


def raw_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def same(a, b):
    return Path(a).resolve() == Path(b).resolve()


# ------------------------------------------------------------------------------------------------------ help

@pytest.mark.parametrize("name", SCRIPTS)
def test_help_exits_zero(name, capsys):
    with pytest.raises(SystemExit) as exc:
        script(name).main(["--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_script_runs_standalone():
    proc = subprocess.run([sys.executable, str(DATA_PREP / "webvid.py"), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "results_2M_train.csv" in proc.stdout


# ------------------------------------------------------------------------------------------------------ COCO

def test_coco_official_with_instruction(tmp_path, capsys):
    images = tmp_path / "coco" / "train2017"
    for i in (1, 2, 4):
        touch(images / f"{i}.jpg")
    ann = dump(tmp_path / "coco" / "captions_train2017.json", {
        "images": [{"id": i, "file_name": f"{i}.jpg"} for i in (2, 1, 3, 4)],
        "annotations": [{"image_id": 1, "caption": " A dog\n on a couch. "}, {"image_id": 1, "caption": "A brown dog."},
                        {"image_id": 2, "caption": "A cat."}, {"image_id": 3, "caption": "No file."},
                        {"image_id": 4, "caption": "   "}]})
    out, inst = tmp_path / "coco_align.jsonl", tmp_path / "inst" / "cococap.jsonl"
    kept, skipped = run(capsys, "coco_captions", "--annotations", ann, "--images", images, "--out", out,
                        "--instruction", inst)
    assert (kept, skipped) == (2, {"missing image": 1, "no captions": 1})
    recs = read_manifest(out, require="caption")
    assert [r.id for r in recs] == ["coco-1", "coco-2"]
    assert recs[0].caption == ["A dog on a couch.", "A brown dog."] and recs[1].caption == ["A cat."]
    assert same(recs[0].inputs[0].path, images / "1.jpg")
    assert raw_lines(out)[0]["inputs"][0]["path"] == "coco/train2017/1.jpg"  # under the manifest's folder
    conv = read_manifest(inst, require="conversations")
    assert [r.id for r in conv] == ["coco-1", "coco-2"] and conv[0].type == "image"
    assert conv[0].conversations == [
        {"from": "human", "value": "Provide a one-sentence caption for the provided image."},
        {"from": "gpt", "value": "A dog on a couch."}]
    assert Path(raw_lines(inst)[0]["inputs"][0]["path"]).is_absolute()  # not under inst/
    assert same(conv[0].inputs[0].path, images / "1.jpg")
    run(capsys, "coco_captions", "--annotations", ann, "--images", images, "--out", out, "--instruction", inst,
        "--per-caption", "--prompt", "Describe the image.")
    conv = read_manifest(inst, require="conversations")
    assert [(r.id, r.conversations[1]["value"]) for r in conv] == [
        ("coco-1-0", "A dog on a couch."), ("coco-1-1", "A brown dog."), ("coco-2-0", "A cat.")]
    assert conv[0].conversations[0]["value"] == "Describe the image."


def test_coco_karpathy_splits_and_limit(tmp_path, capsys):
    for name in ("train2014/a.jpg", "val2014/b.jpg", "val2014/c.jpg"):
        touch(tmp_path / "coco" / name)
    data = dump(tmp_path / "dataset_coco.json", {"images": [
        {"filepath": "train2014", "filename": "a.jpg", "cocoid": 7, "split": "train", "sentences": [{"raw": "A."}]},
        {"filepath": "val2014", "filename": "b.jpg", "cocoid": 8, "split": "restval", "sentences": [{"raw": "B."}]},
        {"filepath": "val2014", "filename": "c.jpg", "cocoid": 9, "split": "val", "sentences": [{"raw": "C."}]}]})
    out = tmp_path / "out" / "k.jsonl"
    assert run(capsys, "coco_captions", "--karpathy", data, "--images", tmp_path / "coco", "--out", out) == \
        (2, {"split not selected (val)": 1})
    assert [r.id for r in read_manifest(out)] == ["coco-7", "coco-8"]
    assert run(capsys, "coco_captions", "--karpathy", data, "--images", tmp_path / "coco", "--out", out,
               "--limit", 1) == (1, {})
    assert len(read_manifest(out)) == 1


# ------------------------------------------------------------------------------------------------------ image-text

def test_image_text_csv_and_depth(tmp_path, capsys):
    root = tmp_path / "cc3m"
    touch(root / "imgs" / "a.jpg")
    touch(root / "imgs" / "a2.jpg")
    touch(root / "imgs" / "b.jpg")
    touch(root / "mirror" / "imgs" / "b.jpg")
    csv_path = touch(root / "cc3m.csv", "caption\turl\n"
                     'Sign says "stop"\timgs/a.jpg\n'
                     "A blue car\thttps://example.com/imgs/b.jpg\n"
                     "Remote\thttp://other.org/c.jpg\n"
                     "Missing\timgs/missing.jpg\n"
                     "bad\trow\textra\n"
                     "\timgs/a2.jpg\n")
    out = root / "image.jsonl"
    kept, skipped = run(capsys, "image_text", "--csv", csv_path, "--out", out, "--url-prefix", "https://example.com/")
    assert (kept, skipped) == (2, {"remote url without a --url-prefix mapping": 1, "missing image": 1, "bad row": 1,
                                   "empty caption": 1})
    recs = read_manifest(out, require="caption")
    assert [(r.id, r.caption) for r in recs] == [("cc3m-1", 'Sign says "stop"'), ("cc3m-2", "A blue car")]
    assert same(recs[1].inputs[0].path, root / "imgs" / "b.jpg")  # the URL path under the CSV's folder
    assert raw_lines(out)[0]["inputs"][0]["path"] == "imgs/a.jpg"
    # with --local-root the URL path lands in the mirror
    kept, _ = run(capsys, "image_text", "--csv", csv_path, "--out", out, "--url-prefix", "https://example.com/",
                  "--local-root", root / "mirror")
    assert kept == 1 and same(read_manifest(out)[0].inputs[0].path, root / "mirror" / "imgs" / "b.jpg")
    # depth: the map with the same key (path relative to the image root) in --depth-dir
    touch(tmp_path / "cc3m_depth" / "imgs" / "a.png")
    out_d = tmp_path / "rgbd.jsonl"
    kept, skipped = run(capsys, "image_text", "--csv", csv_path, "--out", out_d, "--depth-dir", tmp_path / "cc3m_depth",
                        "--url-prefix", "https://example.com/")
    assert (kept, skipped["no depth map"]) == (1, 1)
    (rec,) = read_manifest(out_d)
    assert rec.inputs[0].modality == "depth"
    assert same(rec.inputs[0].path, tmp_path / "cc3m_depth" / "imgs" / "a.png")
    assert same(rec.inputs[0].options["rgb"], root / "imgs" / "a.jpg")


def test_image_text_webdataset_folder_and_tar(tmp_path, capsys):
    shards = tmp_path / "shards"
    touch(shards / "00000" / "000.jpg")
    touch(shards / "00000" / "000.txt", " A red\nbus ")
    touch(shards / "00000" / "001.jpg")
    touch(shards / "00000" / "002.txt", "orphan caption")
    with tarfile.open(shards / "00001.tar", "w") as tar:
        for name, data in (("100.jpg", b"JPEGDATA"), ("100.txt", b"A green tree"), ("100.json", b"{}"),
                           ("101.txt", b"no image"), ("../evil.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = tmp_path / "wds.jsonl"
    kept, skipped = run(capsys, "image_text", "--wds", shards, "--extract-dir", tmp_path / "extracted", "--out", out)
    assert (kept, skipped) == (2, {"image without .txt caption": 1, "caption without image": 2,
                                   "unsafe tar member name": 1})
    recs = read_manifest(out)
    assert [(r.id, r.caption) for r in recs] == [("00000/000", "A red bus"), ("00001/100", "A green tree")]
    assert (tmp_path / "extracted" / "00001" / "100.jpg").read_bytes() == b"JPEGDATA"
    assert same(recs[1].inputs[0].path, tmp_path / "extracted" / "00001" / "100.jpg")
    with pytest.raises(SystemExit):  # shards need --extract-dir
        script("image_text").main(["--wds", str(shards), "--out", str(out)])


# ------------------------------------------------------------------------------------------------------ WebVid

def test_webvid(tmp_path, capsys):
    videos = tmp_path / "videos"
    touch(videos / "pd_a" / "1.mp4")
    touch(videos / "2.mp4")
    csv_path = touch(tmp_path / "results_2M_train.csv", "videoid,contentUrl,duration,page_dir,name\n"
                     '1,https://x/1.mp4,PT00H00M10S,pd_a,"A man, walking"\n'
                     "2,https://x/2.mp4,PT00H00M10S,pd_a,Flat layout\n"
                     "3,https://x/3.mp4,PT00H00M10S,pd_b,Missing\n"
                     "4,https://x/4.mp4,PT00H00M10S,pd_b,\n"
                     "5,https://x/5.mp4,PT00H00M10S,pd_b\n"
                     "1,https://x/1.mp4,PT00H00M10S,pd_a,Duplicate\n")
    out = tmp_path / "webvid.jsonl"
    kept, skipped = run(capsys, "webvid", "--csv", csv_path, "--videos", videos, "--out", out)
    assert (kept, skipped) == (2, {"missing video": 1, "empty caption": 1, "bad row": 1, "duplicate id": 1})
    recs = read_manifest(out)
    assert [(r.id, r.caption) for r in recs] == [("webvid-1", "A man, walking"), ("webvid-2", "Flat layout")]
    assert recs[0].inputs[0].modality == "video" and same(recs[0].inputs[0].path, videos / "pd_a" / "1.mp4")
    assert raw_lines(out)[1]["inputs"][0]["path"] == "videos/2.mp4"


def test_nothing_kept_fails_without_a_manifest(tmp_path, capsys):
    csv_path = touch(tmp_path / "w.csv", "videoid,contentUrl,duration,page_dir,name\n1,u,d,p,Missing\n")
    out = tmp_path / "w.jsonl"
    assert script("webvid").main(["--csv", str(csv_path), "--videos", str(tmp_path), "--out", str(out)]) == 1
    assert not out.exists() and "missing video (1)" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------------ WavCaps

def test_wavcaps(tmp_path, capsys):
    audio = tmp_path / "audio"
    for name in ("AudioSet_SL/Yaaa.flac", "AudioSet_SL/Yaaa.wav", "FreeSound/sub/123.flac", "FreeSound/124.flac"):
        touch(audio / name)
    as_json = dump(tmp_path / "json_files" / "AudioSet_SL" / "as_final.json", {"num_captions_per_audio": 1, "data": [
        {"id": "Yaaa.wav", "caption": "Wind blows.", "audio": "wav_path", "duration": 10.0},
        {"id": "Ybbb.wav", "caption": "No file.", "audio": "wav_path", "duration": 10.0},
        {"id": "Yccc.wav", "caption": "", "audio": "wav_path", "duration": 10.0}]})
    fsd_json = dump(tmp_path / "json_files" / "FreeSound" / "fsd_final.json", {"num_captions_per_audio": 1, "data": [
        {"id": "123", "file_name": "bell.wav", "href": "/people/x/sounds/123/", "tags": [], "description": "d",
         "author": "x", "duration": 3.2, "download_link": "https://x", "caption": "A bell rings.", "audio": "wav_path"},
        {"id": "124", "caption": "Blacklisted.", "audio": "wav_path", "duration": 2.0}]})
    black = dump(tmp_path / "blacklist.json", {"AudioSet": ["Yzzz.wav"], "FreeSound": ["124"]})
    out = tmp_path / "wavcaps.jsonl"
    kept, skipped = run(capsys, "wavcaps", "--json", as_json, fsd_json, "--audio-root", audio, "--blacklist", black,
                        "--out", out)
    assert (kept, skipped) == (2, {"missing audio": 1, "empty caption": 1, "blacklisted": 1})
    recs = read_manifest(out, require="caption")
    assert [(r.id, r.caption) for r in recs] == [("wavcaps-AudioSet_SL-Yaaa", "Wind blows."),
                                                 ("wavcaps-FreeSound-123", "A bell rings.")]
    assert same(recs[0].inputs[0].path, audio / "AudioSet_SL" / "Yaaa.flac")  # flac preferred
    assert same(recs[1].inputs[0].path, audio / "FreeSound" / "sub" / "123.flac")


# ------------------------------------------------------------------------------------------------ Cap3D / PointLLM

def test_cap3d_and_pointllm_instructions(tmp_path, capsys):
    points = tmp_path / "8192_npy"
    for uid in ("uid1", "uid2", "uid4", "uid5"):
        points.mkdir(exist_ok=True)
        np.save(points / f"{uid}_8192.npy", np.zeros((8, 6), np.float32))
    captions = touch(tmp_path / "Cap3D_automated_Objaverse.csv",
                     'uid1,A wooden chair.\nuid2,"A table, round."\nuid3,Missing cloud.\nuid4,\nuid5,Excluded.\n'
                     "bad,three,fields\n")
    exclude = touch(tmp_path / "val_object_ids.txt", "uid5\n")
    out = tmp_path / "cap3d.jsonl"
    kept, skipped = run(capsys, "cap3d_pointllm", "--captions", captions, "--points", points, "--exclude", exclude,
                        "--out", out)
    assert (kept, skipped) == (2, {"missing point cloud": 1, "empty caption": 1, "excluded object": 1, "bad row": 1})
    recs = read_manifest(out)
    assert [(r.id, r.caption) for r in recs] == [("cap3d-uid1", "A wooden chair."), ("cap3d-uid2", "A table, round.")]
    assert same(recs[0].inputs[0].path, points / "uid1_8192.npy") and recs[0].inputs[0].modality == "point"

    conv = lambda *turns: [{"from": f, "value": v} for f, v in turns]  # noqa: E731
    inst = dump(tmp_path / "PointLLM_complex_instruction_70K.json", [
        {"object_id": "uid1", "conversation_type": "single_round",
         "conversations": conv(("human", "<point>\nWhat is this?"), ("gpt", "A chair."))},
        {"object_id": "uid1", "conversation_type": "multi_round",
         "conversations": conv(("human", "What color?\n<point>"), ("gpt", "Brown."), ("human", "Material?"),
                               ("gpt", "Wood."))},
        {"object_id": "uid3", "conversations": conv(("human", "<point>\nQ"), ("gpt", "A"))},
        {"object_id": "uid2", "conversations": conv(("human", "q"), ("human", "q2"), ("gpt", "a"))}])
    out = tmp_path / "pointllm.jsonl"
    kept, skipped = run(capsys, "cap3d_pointllm", "--instructions", inst, "--points", points, "--out", out)
    assert (kept, skipped) == (2, {"missing point cloud": 1, "turns do not alternate human/gpt": 1})
    recs = read_manifest(out, require="conversations")
    assert [r.id for r in recs] == ["pointllm-uid1", "pointllm-uid1-1"] and recs[0].type == "point"
    assert recs[0].conversations == conv(("human", "What is this?"), ("gpt", "A chair."))
    assert recs[1].conversations[0] == {"from": "human", "value": "What color?"}


# ------------------------------------------------------------------------------------------------------ Ego4D IMU

def make_imu(folder, uid, ts_ms):
    folder.mkdir(parents=True, exist_ok=True)
    ts = np.asarray(ts_ms, np.float64)
    np.save(folder / f"{uid}.npy", np.random.default_rng(0).standard_normal((6, len(ts))).astype(np.float32))
    np.save(folder / f"{uid}_timestamps.npy", ts)


def imu_fixture(tmp_path):
    imu = tmp_path / "processed_imu"
    make_imu(imu, "vidA", np.arange(1001) * 10.0)  # 0..10 s at 100 Hz
    make_imu(imu, "vidB", np.concatenate([np.arange(301) * 10.0, 20000 + np.arange(1001) * 10.0]))  # gap 3..20 s
    make_imu(imu, "vidD", np.arange(21) * 500.0)  # 2 Hz: 4 samples in a 2-s window
    return imu


def test_ego4d_narrations(tmp_path, capsys):
    imu = imu_fixture(tmp_path)
    narr = lambda *ns: {"narrations": [{"timestamp_sec": t, "timestamp_frame": 0, "narration_text": x,  # noqa: E731
                                        "annotation_uid": "u"} for t, x in ns], "summaries": []}
    path = dump(tmp_path / "narration.json", {
        "vidA": {"narration_pass_1": narr((0.5, "#C C opens the door"), (5.0, "#C C picks a cup from #O man X #unsure"),
                                          (9.5, "#C C sits"), (3.0, "#unsure"), ("x", "bad")),
                 "narration_pass_2": narr((5.0, "#C C drinks"))},
        "vidB": {"narration_pass_1": narr((10.0, "#O person B waves"), (25.0, "#O The woman Y talks to #C C"))},
        "vidC": {"narration_pass_1": narr((1.0, "#C C walks"))},
        "vidD": {"narration_pass_1": narr((5.0, "#C C runs"))}})
    out = tmp_path / "imu.jsonl"
    kept, skipped = run(capsys, "ego4d_imu", "--narrations", path, "--imu-dir", imu, "--out", out)
    assert (kept, skipped) == (2, {"IMU window outside the recording": 2, "empty narration": 1,
                                   "bad entry (no numeric time)": 1, "IMU window in a recording gap": 1, "no IMU for video": 1,
                                   "IMU window holds fewer than 10 samples": 1})
    recs = read_manifest(out, require="caption")
    assert [(r.id, r.caption) for r in recs] == [
        ("ego4d-vidA-p1-1", "The camera wearer picks a cup from someone"),
        ("ego4d-vidB-p1-1", "Someone talks to the camera wearer")]
    a = recs[0].inputs[0]
    assert a.modality == "imu" and a.options["start"] == 4.0 and a.options["end"] == 6.0
    assert same(a.path, imu / "vidA.npy") and same(a.options["timestamps"], imu / "vidA_timestamps.npy")
    assert recs[1].inputs[0].options["start"] == 24.0
    for rec in recs:  # the loader accepts every window kept
        x = load_imu(rec.inputs[0].path, length=400, target_rate=200, channels=6, **rec.inputs[0].options)
        assert x.shape == (6, 400)
    kept, _ = run(capsys, "ego4d_imu", "--narrations", path, "--imu-dir", imu, "--out", out, "--passes", "1", "2")
    assert kept == 3 and read_manifest(out)[1].caption == "The camera wearer drinks"


def test_ego4d_window_list(tmp_path, capsys):
    imu = imu_fixture(tmp_path)
    path = dump(tmp_path / "window_idx_train.json", [
        {"video_uid": "vidA", "window_start": 2.0, "window_end": 4.0, "text": "#C C walks"},
        {"video_uid": "vidA", "window_start": 9.0, "window_end": 11.0, "text": "#C C sits"},
        {"video_uid": "vidC", "window_start": 1.0, "window_end": 3.0, "text": "#C C runs"}])
    out = tmp_path / "imu.jsonl"
    kept, skipped = run(capsys, "ego4d_imu", "--windows", path, "--imu-dir", imu, "--out", out)
    assert (kept, skipped) == (1, {"IMU window outside the recording": 1, "no IMU for video": 1})
    (rec,) = read_manifest(out)
    assert rec.caption == "The camera wearer walks"
    assert (rec.inputs[0].options["start"], rec.inputs[0].options["end"]) == (2.0, 4.0)


# ------------------------------------------------------------------------------------------------------ NSD fMRI

def coco_captions(path, ids):
    return dump(path, {"images": [{"id": i} for i in ids],
                       "annotations": [{"image_id": i, "caption": f"Image {i} caption {k}."} for i in ids
                                       for k in range(2)]})


def test_nsd_single_array(tmp_path, capsys):
    fmri = np.random.default_rng(0).standard_normal((5, 3, 16)).astype(np.float32)
    fmri[3, 1, 2] = np.nan
    np.save(tmp_path / "betas.npy", fmri)
    np.save(tmp_path / "coco_ids.npy", np.array([10, 11, 99, 12, 10]))
    caps = coco_captions(tmp_path / "captions_train2017.json", (10, 11, 12))
    out, inst = tmp_path / "nsd" / "fmri.jsonl", tmp_path / "nsd" / "fmri_inst.jsonl"
    kept, skipped = run(capsys, "nsd_fmri", "--fmri", tmp_path / "betas.npy", "--ids", tmp_path / "coco_ids.npy",
                        "--captions", caps, "--voxels", 16, "--out", out, "--instruction", inst)
    assert (kept, skipped) == (3, {"no captions for the COCO image": 1, "non-finite fMRI values": 1})
    recs = read_manifest(out, require="caption")
    assert [r.id for r in recs] == ["nsd-00000", "nsd-00001", "nsd-00004"]
    assert recs[0].caption == ["Image 10 caption 0.", "Image 10 caption 1."] and recs[0].extra == {"coco_id": 10}
    assert raw_lines(out)[2]["inputs"][0]["path"] == "fmri_npy/00004.npy"
    np.testing.assert_array_equal(np.load(recs[2].inputs[0].path), fmri[4])
    assert load_fmri(recs[1].inputs[0].path, voxels=16).shape == (1, 16)
    conv = read_manifest(inst, require="conversations")
    assert conv[0].conversations[0]["value"] == "Describe the scene based on fMRI data." and conv[0].type == "fmri"


def test_nsd_mindeye_folder(tmp_path, capsys):
    folder = tmp_path / "train_subj01"
    folder.mkdir()
    for key, shape, nsd in (("s0", (3, 16), 5), ("s1", (16,), 7), ("s2", (3, 8), 5)):
        np.save(folder / f"{key}.nsdgeneral.npy", np.ones(shape, np.float32))
        np.save(folder / f"{key}.coco73k.npy", np.array(nsd))
        np.save(folder / f"{key}.trial.npy", np.array(0))
    stim = touch(tmp_path / "nsd_stim_info_merged.csv", ",cocoId,cocoSplit,nsdId\n0,10,train2017,5\n")
    caps = coco_captions(tmp_path / "captions.json", (10,))
    out = tmp_path / "fmri.jsonl"
    kept, skipped = run(capsys, "nsd_fmri", "--fmri", folder, "--stim-info", stim, "--captions", caps,
                        "--voxels", 16, "--out", out)
    assert (kept, skipped) == (1, {"no COCO id for trial": 1, "wrong fMRI shape": 1})
    (rec,) = read_manifest(out)
    assert rec.id == "nsd-s0" and same(rec.inputs[0].path, folder / "s0.nsdgeneral.npy")
    # a CSV table keyed by file
    table = touch(tmp_path / "trials.csv", "trial,coco_id\ns0,10\ns1,10\ns2,77\n")
    kept, skipped = run(capsys, "nsd_fmri", "--fmri", folder, "--ids", table, "--captions", caps, "--voxels", 16,
                        "--out", out)
    assert (kept, skipped) == (2, {"no captions for the COCO image": 1})


# ------------------------------------------------------------------------------------------------------ instructions

def conv(*turns):
    return [{"from": f, "value": v} for f, v in turns]


def test_llava_and_onellm_instructions(tmp_path, capsys):
    media = tmp_path / "data"
    for name in ("coco/1.jpg", "depth/1.png", "audio/a.wav"):
        touch(media / name)
    qa = conv(("human", "<image>\nWhat is it?"), ("gpt", "A dog."))
    path = dump(tmp_path / "mix.json", [
        {"id": "1", "image": "coco/1.jpg", "conversations": qa},
        {"id": "2", "image": "coco/missing.jpg", "conversations": qa},
        {"id": "3", "conversations": conv(("human", "Hi"), ("gpt", "Hello"))},
        {"id": "4", "image": "coco/1.jpg", "depth_image": "depth/1.png", "conversations": qa},
        {"id": "5", "image": "coco/1.jpg", "normal_image": "normal/missing.png", "conversations": qa},
        {"id": "1", "image": "coco/1.jpg",
         "conversations": conv(("gpt", "Intro"), ("human", "Q <image> here"), ("gpt", "A"))},
        {"id": "7", "image": "coco/1.jpg", "conversations": conv(("human", "Q"), ("human", "Q"))},
        {"id": "8", "audio": "audio/a.wav", "conversations": conv(("human", "<audio>\nWhat?"), ("gpt", "Rain."))},
        {"id": "9", "image": "coco/1.jpg", "conversations": conv(("human", "<image>\nQ"), ("gpt", "  "))},
        {"id": "10", "image": "coco/1.jpg", "conversations": conv(("human", "Q"), ("gpt", "A"), ("gpt", "B"))}])
    out = tmp_path / "inst.jsonl"
    kept, skipped = run(capsys, "llava_instruct", "--json", path, "--media-root", media, "--out", out)
    assert (kept, skipped) == (5, {"missing image file": 1, "missing normal map": 1, "no answered turn": 1,
                                   "empty answer": 1, "turns do not alternate human/gpt": 1})
    recs = read_manifest(out, require="conversations")
    assert [(r.id, r.type) for r in recs] == [("1", "image"), ("3", "text"), ("4", "depth"), ("1-1", "image"),
                                              ("8", "audio")]
    assert recs[0].conversations == conv(("human", "What is it?"), ("gpt", "A dog."))
    assert recs[1].inputs == []
    assert same(recs[2].inputs[0].path, media / "depth/1.png") and same(recs[2].inputs[0].options["rgb"],
                                                                         media / "coco/1.jpg")
    assert recs[3].conversations == conv(("human", "Q here"), ("gpt", "A"))
    assert same(recs[4].inputs[0].path, media / "audio/a.wav")


def test_onellm_typed_files_and_imu(tmp_path, capsys):
    touch(tmp_path / "audioset2" / "a.wav")
    qa = conv(("human", "What do you hear?"), ("gpt", "Rain."))
    path = dump(tmp_path / "audiocap_train.json", [{"id": "a1", "image": "audioset2/a.wav", "conversations": qa},
                                                   {"id": "a2", "conversations": qa}])
    out = tmp_path / "audio.jsonl"
    assert run(capsys, "llava_instruct", "--json", path, "--type", "audio", "--out", out) == \
        (1, {"no audio path": 1})
    (rec,) = read_manifest(out)
    assert rec.inputs[0].modality == "audio" and rec.type == "audio"

    imu_fixture(tmp_path / "imu")
    item = lambda uid, s, e: {"id": f"{uid}-{s}", "imu_path": "imu/processed_imu", "video_uid": uid,  # noqa: E731
                              "window_start": s, "window_end": e, "conversations": qa}
    path = dump(tmp_path / "imu_fixed_50k.json", [item("vidA", 1.0, 3.0), item("vidA", 9.5, 11.5),
                                                  item("vidX", 1.0, 3.0), item("vidB", 9.0, 11.0)])
    out = tmp_path / "imu.jsonl"
    kept, skipped = run(capsys, "llava_instruct", "--json", path, "--out", out)
    assert (kept, skipped) == (1, {"IMU window outside the recording": 1, "no IMU for video": 1,
                                   "IMU window in a recording gap": 1})
    (rec,) = read_manifest(out)
    assert rec.type == "imu" and (rec.inputs[0].options["start"], rec.inputs[0].options["end"]) == (1.0, 3.0)
    assert raw_lines(out)[0]["inputs"][0]["path"] == "imu/processed_imu/vidA.npy"


# ------------------------------------------------------------------------------------------------------ --verify

def test_verify_decodes_media_and_skips_the_unusable_by_reason(tmp_path, capsys):
    """A 0-byte .mp4 and a text file named .jpg are kept without --verify (only existence is checked) and skipped,
    counted by reason, with it (issue 20)."""
    from PIL import Image

    from onellm.data.synth.render import VIDEO_FPS, ball_frames, write_mp4

    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "1.mp4", ball_frames(np.random.default_rng(0), "red", "horizontally"), VIDEO_FPS)
    touch(videos / "2.mp4", b"")
    touch(videos / "3.mp4", b"\x00\x00\x00\x18ftypmp42 not really a video")
    csv_path = touch(tmp_path / "results.csv", "videoid,contentUrl,duration,page_dir,name\n"
                     "1,u,PT10S,,A ball\n2,u,PT10S,,Empty\n3,u,PT10S,,Garbage\n")
    out = tmp_path / "webvid.jsonl"
    assert run(capsys, "webvid", "--csv", csv_path, "--videos", videos, "--out", out) == (3, {})
    kept, skipped = run(capsys, "webvid", "--csv", csv_path, "--videos", videos, "--out", out, "--verify",
                        "--verify-config", "tiny")
    assert kept == 1 and skipped == {"unusable video: empty file (0 bytes)": 1, "unusable video: cannot decode video": 1}
    assert [r.id for r in read_manifest(out)] == ["webvid-1"]

    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.jpg")
    touch(images / "b.jpg", "this is text, not a JPEG")
    csv_path = touch(tmp_path / "pairs.csv", "caption\turl\nA black box\timgs/a.jpg\nText\timgs/b.jpg\n")
    out = tmp_path / "pairs.jsonl"
    assert run(capsys, "image_text", "--csv", csv_path, "--out", out)[0] == 2
    kept, skipped = run(capsys, "image_text", "--csv", csv_path, "--out", out, "--verify", "--verify-workers", 2)
    assert (kept, skipped) == (1, {"unusable image: cannot decode image": 1})
