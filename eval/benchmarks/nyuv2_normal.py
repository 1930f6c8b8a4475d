"""NYUv2 (654 test scenes) zero-shot scene classification from the normal map + its RGB image (paper Tab. 6)."""
from pathlib import Path

from onellm.evaluation.benchmark import SCENE_PROMPT, Benchmark, scene_records, scene_scorer
from onellm.evaluation.scene import NYUV2


def read(root: Path) -> list:
    return scene_records(root, "normal", NYUV2)


BENCHMARK = Benchmark(
    name="nyuv2_normal", modality="normal", description="NYUv2 (654 test scenes) scene classification, normal maps",
    data_dir="nyuv2", doc_anchor="nyuv2", prompt=SCENE_PROMPT, read=read, score=scene_scorer(NYUV2),
    primary_metric="accuracy", paper={"accuracy": 46.5},
    paper_split="test*", paper_table="Tab. 6", released="none released (docs: TODO)",
    splits={"test": "654 test scenes (splits.mat testNdxs)"})
