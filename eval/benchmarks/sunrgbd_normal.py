"""SUN RGB-D (test split) zero-shot scene classification from the normal map + its RGB image (paper Tab. 6)."""
from pathlib import Path

from onellm.evaluation.benchmark import SUNRGBD_CLASSES, SCENE_PROMPT, Benchmark, scene_records, scene_scorer


def read(root: Path) -> list:
    return scene_records(root, "normal", SUNRGBD_CLASSES)


BENCHMARK = Benchmark(
    name="sunrgbd_normal", modality="normal", description="SUN RGB-D (test split) scene classification, normal maps",
    data_dir="sunrgbd", doc_anchor="sunrgbd", prompt=SCENE_PROMPT, read=read, score=scene_scorer(),
    primary_metric="accuracy", paper={"accuracy": 21.2})
