"""SUN RGB-D (test split) zero-shot scene classification from the depth map + its RGB image (paper Tab. 6)."""
from pathlib import Path

from onellm.evaluation.benchmark import SCENE_PROMPT, Benchmark, scene_records, scene_scorer
from onellm.evaluation.scene import SUNRGBD


def read(root: Path) -> list:
    return scene_records(root, "depth", SUNRGBD)


BENCHMARK = Benchmark(
    name="sunrgbd_depth", modality="depth", description="SUN RGB-D (test split) scene classification, depth maps",
    data_dir="sunrgbd", doc_anchor="sunrgbd", prompt=SCENE_PROMPT, read=read, score=scene_scorer(SUNRGBD),
    primary_metric="accuracy", paper={"accuracy": 29.0},
    paper_split="test*", paper_table="Tab. 6", released="none released (docs: TODO)",
    splits={"test": "test split (toolbox allsplit.mat)"})
