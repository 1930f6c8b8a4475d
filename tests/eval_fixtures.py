"""Tiny benchmark datasets in their public annotation formats (docs/evaluation.md), 2-3 items each.

Each ``write_<benchmark>(root)`` fills ``root`` the way the real download is laid out and returns the ids the
benchmark's ``read`` must produce, in order. ``DATASETS`` maps a data sub-folder name to its writer.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from loader_fixtures import write_video

RNG = np.random.default_rng(0)


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _image(path: Path, size=(40, 48)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def _wav(path: Path, seconds: float = 1.0, freq: float = 440.0) -> None:
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


def _avi(path: Path, n_frames: int = 20) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _sentences(caps: list[str], imgid: int) -> list[dict]:
    return [{"tokens": c.lower().split(), "raw": c, "imgid": imgid, "sentid": imgid * 10 + k}
            for k, c in enumerate(caps)]


def write_coco(root: Path) -> list[str]:
    """Karpathy ``dataset_coco.json``: 2 test images + 1 train image (must be left out)."""
    images = []
    for k, (cocoid, split) in enumerate([(391895, "test"), (522418, "train"), (184613, "test")]):
        name = f"COCO_val2014_{cocoid:012d}.jpg"
        _image(root / "val2014" / name)
        images.append({"filepath": "val2014", "sentids": [k * 10, k * 10 + 1], "filename": name, "imgid": k,
                       "split": split, "cocoid": cocoid,
                       "sentences": _sentences(["A man riding a bike.", "a person on a bicycle "], k)})
    _json(root / "dataset_coco.json", {"images": images, "dataset": "coco"})
    return ["391895", "184613"]


def write_nocaps(root: Path) -> list[str]:
    """``nocaps_val_4500_captions.json`` (COCO style, with ``domain``) + ``images/``."""
    images, anns = [], []
    for i, domain in enumerate(["in-domain", "out-domain"]):
        name = f"{i:016x}.jpg"
        _image(root / "images" / name)
        images.append({"id": i, "open_images_id": f"{i:016x}", "file_name": name, "height": 40, "width": 48,
                       "coco_url": f"https://example/{name}", "domain": domain})
        anns += [{"image_id": i, "id": i * 10 + k, "caption": c} for k, c in
                 enumerate(["a red fox in the snow", "an animal standing in snow", "a fox"])]
    _json(root / "nocaps_val_4500_captions.json", {"licenses": [], "info": {}, "images": images,
                                                   "annotations": anns})
    # the test split: image info only (nocaps.org/download; captions are private), ids from 0 like val
    test = [{"id": i, "open_images_id": f"{0xabc0 + i:016x}", "height": 40, "width": 48, "coco_url": "",
             "file_name": f"{0xabc0 + i:016x}.jpg", "license": 0, "date_captured": "2018-11-06 11:04:33"}
            for i in range(3)]
    for img in test:
        _image(root / "images" / img["file_name"])
    _json(root / "nocaps_test_image_info.json", {"licenses": [], "info": {"description": "nocaps test dataset"},
                                                 "images": test})
    return ["0", "1"]


def write_flickr30k(root: Path) -> list[str]:
    """Karpathy ``dataset_flickr30k.json`` (no ``filepath``) + ``flickr30k-images/``."""
    images = []
    for k, (name, split) in enumerate([("1000092795.jpg", "test"), ("10002456.jpg", "val"),
                                       ("1000268201.jpg", "test")]):
        _image(root / "flickr30k-images" / name)
        images.append({"sentids": [k], "imgid": k, "split": split, "filename": name,
                       "sentences": _sentences(["Two dogs play in the grass.", "dogs playing outside"], k)})
    _json(root / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})
    return ["1000092795", "1000268201"]


def vqa_answers(counts: dict[str, int]) -> list[dict]:
    """10 annotator answers in the VQAv2 annotation format."""
    answers = [a for a, n in counts.items() for _ in range(n)]
    return [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)]


def write_vqav2(root: Path) -> list[str]:
    """``v2_OpenEnded_mscoco_val2014_questions.json`` + ``v2_mscoco_val2014_annotations.json`` + ``val2014/``."""
    spec = [(262148, 262148000, "Is it sunny?", {"yes": 3, "no": 7}, "no", "yes/no"),
            (262148, 262148001, "How many dogs?", {"2": 9, "two dogs": 1}, "2", "number"),
            (393225, 393225000, "What color is the bus?", {"red": 10}, "red", "other")]
    questions, anns = [], []
    for image_id, qid, question, counts, mc, kind in spec:
        _image(root / "val2014" / f"COCO_val2014_{image_id:012d}.jpg")
        questions.append({"image_id": image_id, "question": question, "question_id": qid})
        anns.append({"question_type": "what", "multiple_choice_answer": mc, "answers": vqa_answers(counts),
                     "image_id": image_id, "answer_type": kind, "question_id": qid})
    _json(root / "v2_OpenEnded_mscoco_val2014_questions.json",
          {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
           "data_subtype": "val2014", "questions": questions})
    _json(root / "v2_mscoco_val2014_annotations.json",
          {"info": {}, "license": {}, "data_subtype": "val2014", "data_type": "mscoco", "annotations": anns})
    write_vqav2_test(root)
    return [str(s[1]) for s in spec]


# test2015 questions: (image_id, question_id, question); the first two are also in test-dev2015.
VQAV2_TEST = [(1, 1000, "What is on the plate?"), (1, 1001, "Is it raining?"), (2, 2000, "How many cats?")]


def write_vqav2_test(root: Path) -> None:
    """The test question files (``..._test-dev2015_questions.json`` is a subset of ``..._test2015_...``), no
    answers (the server has them), and ``test2015/`` images."""
    for subtype, items in [("test-dev2015", VQAV2_TEST[:2]), ("test2015", VQAV2_TEST)]:
        questions = [{"image_id": i, "question": q, "question_id": qid} for i, qid, q in items]
        _json(root / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
              {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {},
               "data_subtype": subtype, "questions": questions})
    for image_id in {i for i, _, _ in VQAV2_TEST}:
        _image(root / "test2015" / f"COCO_test2015_{image_id:012d}.jpg")


def write_gqa(root: Path) -> list[str]:
    """``testdev_balanced_questions.json`` ({qid: {...}}) + ``images/{imageId}.jpg``."""
    questions = {}
    for qid, image, q, a in [("20968379", "n288870", "Is the sky blue?", "yes"),
                             ("201640614", "n469236", "What is on the table?", "cup")]:
        _image(root / "images" / f"{image}.jpg")
        questions[qid] = {"semantic": [], "entailed": [], "equivalent": [qid], "question": q, "imageId": image,
                          "isBalanced": True, "groups": {"global": None, "local": "10q"}, "answer": a,
                          "semanticStr": "", "annotations": {}, "types": {}, "fullAnswer": f"It is {a}."}
    _json(root / "testdev_balanced_questions.json", questions)
    return list(questions)


def write_msvd_qa(root: Path) -> list[str]:
    """``test_qa.json`` (numeric ``video_id``) + ``youtube_mapping.txt`` + ``YouTubeClips/*.avi``."""
    names = {1: "-4wsuPCjDBc_5_15", 2: "0lh_UWF9ZP4_62_69"}
    for name in names.values():
        _avi(root / "YouTubeClips" / f"{name}.avi")
    (root / "youtube_mapping.txt").write_text("".join(f"{n} vid{k}\n" for k, n in names.items()))
    items = [{"answer": "man", "id": 30933, "question": "who is riding?", "video_id": 1},
             {"answer": "guitar", "id": 30934, "question": "what is played?", "video_id": 2},
             {"answer": "dog", "id": 30935, "question": "what runs?", "video_id": 1}]
    _json(root / "test_qa.json", items)
    return ["30933", "30934", "30935"]


def write_clotho(root: Path) -> list[str]:
    """``clotho_captions_evaluation.csv`` (file_name, caption_1..5) + ``evaluation/*.wav``."""
    rows = [["file_name"] + [f"caption_{k}" for k in range(1, 6)]]
    for i, name in enumerate(["Santa Motor.wav", "river flow, 2.wav"]):
        _wav(root / "evaluation" / name, freq=300 + 200 * i)
        rows.append([name] + [f"water flows over rocks number {k}" for k in range(5)])
    with (root / "clotho_captions_evaluation.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return ["Santa Motor.wav", "river flow, 2.wav"]


def write_clotho_aqa(root: Path) -> list[str]:
    """``clotho_aqa_test.csv`` (file_name, QuestionText, answer, confidence; 3 rows per question)."""
    rows = [["file_name", "QuestionText", "answer", "confidence"]]
    _wav(root / "audio_files" / "birds.wav")
    for q, answers in [("Are birds singing?", ["yes", "yes", "no"]), ("What is making noise?", ["bird", "birds",
                                                                                                  "a bird"])]:
        rows += [["birds.wav", q, a, "yes"] for a in answers]
    with (root / "clotho_aqa_test.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return ["birds.wav#0", "birds.wav#1"]


def write_objaverse(root: Path) -> list[str]:
    """``PointLLM_brief_description_val_200_GT.json`` + ``8192_npy/<object_id>_8192.npy`` (8192 x 6)."""
    items = []
    for oid, cap in [("8d4b5d2ce41b4a0c9bb2f1f4a2de3d11", "a wooden chair"), ("0a1b2c3d", "a red car")]:
        (root / "8192_npy").mkdir(parents=True, exist_ok=True)
        np.save(root / "8192_npy" / f"{oid}_8192.npy", RNG.random((8192, 6)).astype(np.float32))
        items.append({"object_id": oid, "conversations": [{"from": "human", "value": "<point>\nWhat is this?"},
                                                          {"from": "gpt", "value": cap}]})
    _json(root / "PointLLM_brief_description_val_200_GT.json", items)
    return [i["object_id"] for i in items]


def write_scenes(root: Path, labels: list[str], classes: list[str] | None = None) -> list[str]:
    """The documented scene layout: ``annotations.json`` + rgb/ depth/ normal/ (+ optional ``classes.txt``)."""
    anns = []
    for i, label in enumerate(labels):
        for kind in ("rgb", "depth", "normal"):
            _image(root / kind / f"{i:04d}.png")
        anns.append({"id": f"{i:04d}", "rgb": f"rgb/{i:04d}.png", "depth": f"depth/{i:04d}.png",
                     "normal": f"normal/{i:04d}.png", "label": label})
    _json(root / "annotations.json", anns)
    if classes:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return [a["id"] for a in anns]


def write_ego4d_imu(root: Path) -> list[str]:
    """``imu_2000_cococap.json`` + ``processed_imu/<video_uid>.npy`` (6 x T) and ``_timestamps.npy`` (ms)."""
    uid = "0a7a74b5-0b8c-4a2c-8f6e-2f3c5d1e9b10"
    (root / "processed_imu").mkdir(parents=True, exist_ok=True)
    n = 200 * 10  # 10 s at 200 Hz
    np.save(root / "processed_imu" / f"{uid}.npy", RNG.standard_normal((6, n)).astype(np.float32))
    np.save(root / "processed_imu" / f"{uid}_timestamps.npy", np.arange(n) * 5.0)
    images = [{"id": i, "file_name": f"{uid}_{i}", "video_uid": uid, "window_start": 2.0 * i + 1,
               "window_end": 2.0 * i + 3} for i in range(2)]
    anns = [{"image_id": i, "id": i, "caption": c} for i, c in enumerate(["#C C walks around", "C opens a door"])]
    _json(root / "imu_2000_cococap.json", {"images": images, "annotations": anns})
    return ["0", "1"]


def write_nsd_fmri(root: Path) -> list[str]:
    """``fmri_eval_cococap.json`` (COCO format; ``file_name`` = the npy, relative) + (3, 15724) npy files."""
    images, anns = [], []
    for i in range(2):
        rel = f"fmri/subj01/test/{i:05d}.npy"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / rel, RNG.standard_normal((3, 15724)).astype(np.float32))
        images.append({"id": i, "file_name": rel})
        anns += [{"image_id": i, "id": 2 * i + k, "caption": c} for k, c in
                 enumerate(["a train on the tracks", "a locomotive at a station"])]
    _json(root / "fmri_eval_cococap.json", {"images": images, "annotations": anns})
    return ["0", "1"]


def write_valor(root: Path) -> list[str]:
    """``desc_test.json`` ([{video_id, desc}]) + ``videos/<id>.mp4`` + ``audios/<id>.wav``."""
    ids = ["-0cjRZ1V5vI_000030", "zzX9bEYHOWo_000120"]
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for vid in ids:
        write_video(root / "videos" / f"{vid}.mp4", n_frames=12)
        _wav(root / "audios" / f"{vid}.wav")
    _json(root / "desc_test.json", [{"video_id": v, "desc": "a man plays a guitar while a dog barks"} for v in ids])
    return ids


def write_mmvet(root: Path) -> list[str]:
    """``mm-vet.json`` (``{"v1_<k>": {"imagename", "question", "answer", "capability"}}``, as in mm-vet.zip) +
    ``images/``."""
    data = {
        "v1_0": {"imagename": "v1_0.png", "question": "What is x in the equation?", "answer": "-1 <AND> -5",
                 "capability": ["ocr", "math"]},
        "v1_1": {"imagename": "v1_1.jpg", "question": "What is the brand of this device?", "answer": "Motorola",
                 "capability": ["ocr", "rec"]},
    }
    for q in data.values():
        _image(root / "images" / q["imagename"])
    _json(root / "mm-vet.json", data)
    return list(data)


NYU_LABELS = ["bedroom", "living_room", "others"]
SUN_LABELS = ["corridor", "home_office"]

# data sub-folder -> writer
DATASETS = {
    "coco": write_coco, "nocaps": write_nocaps, "flickr30k": write_flickr30k, "vqav2": write_vqav2,
    "gqa": write_gqa, "msvd_qa": write_msvd_qa, "clotho": write_clotho, "clotho_aqa": write_clotho_aqa,
    "objaverse": write_objaverse, "nyuv2": lambda r: write_scenes(r, NYU_LABELS),
    "sunrgbd": lambda r: write_scenes(r, SUN_LABELS), "ego4d_imu": write_ego4d_imu, "nsd": write_nsd_fmri,
    "valor32k": write_valor, "mm-vet": write_mmvet,
}


def write_all(root: Path) -> dict[str, list[str]]:
    """Every dataset under ``root/<data_dir>``; returns {data_dir: ids}."""
    return {name: writer(root / name) for name, writer in DATASETS.items()}
