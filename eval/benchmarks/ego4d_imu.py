"""Ego4D IMU captioning, the 2000 held-out 2-s windows: CIDEr and ROUGE-L."""
from pathlib import Path

from onellm.evaluation.benchmark import Benchmark, caption_scorer, coco_caption_records, require

PROMPT = "Describe the motion."  # paper; the released imu_cap_ego4d.py asks "Describe the scene."


def _inputs(img: dict) -> list[dict]:
    uid = img["video_uid"]
    return [{"modality": "imu", "path": f"processed_imu/{uid}.npy", "timestamps": f"processed_imu/{uid}_timestamps.npy",
             "start": float(img["window_start"]), "end": float(img["window_end"])}]


def read(root: Path) -> list:
    require(root / "processed_imu", "imu2clip processed_imu folder")
    return coco_caption_records(root / "imu_2000_cococap.json", PROMPT, _inputs, root)


BENCHMARK = Benchmark(
    name="ego4d_imu", modality="imu", description="Ego4D IMU captioning (2000 windows)", data_dir="ego4d_imu",
    doc_anchor="ego4d-imu", prompt=PROMPT, read=read, score=caption_scorer(), primary_metric="CIDEr",
    table_metrics=("CIDEr", "ROUGE-L"), paper={"CIDEr": 24.9, "ROUGE-L": 19.5},
    paper_split="2000 held-out windows",
    released="2000 windows (imu_cap_ego4d.py: imu_2000_cococap.json)", splits={"test": "2000 held-out windows"})
