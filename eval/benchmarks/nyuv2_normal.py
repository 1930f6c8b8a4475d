"""NYUv2 (654 test scenes) zero-shot scene classification from the normal map + its RGB image (paper Tab. 6)."""
from pathlib import Path

from onellm.evaluation.benchmark import NYUV2_CLASSES, SCENE_PROMPT, Benchmark, scene_records, scene_scorer


def read(root: Path) -> list:
    return scene_records(root, "normal", NYUV2_CLASSES)


BENCHMARK = Benchmark(
    name="nyuv2_normal", modality="normal", description="NYUv2 (654 test scenes) scene classification, normal maps",
    data_dir="nyuv2", doc_anchor="nyuv2", prompt=SCENE_PROMPT, read=read, score=scene_scorer(),
    primary_metric="accuracy", paper={"accuracy": 46.5})
