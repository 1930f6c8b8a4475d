"""COCO Karpathy test split (5000 images) captioning; the paper reports no COCO number (Tab. 1 has NoCaps)."""
from pathlib import Path

from onellm.evaluation.benchmark import CAPTION_PROMPT, Benchmark, caption_scorer, karpathy_records

PROMPT = CAPTION_PROMPT.format(noun="image")  # = the released image_cap_cococap.py prompt


def read(root: Path, split: str = "test") -> list:
    # Karpathy's dataset_coco.json; images at <root>/<filepath>/<filename> (val2014/COCO_val2014_*.jpg).
    return karpathy_records(root / "dataset_coco.json", root, PROMPT, split=split, id_key="cocoid")


BENCHMARK = Benchmark(
    name="coco_caption", modality="image", description="COCO Karpathy test split captioning",
    data_dir="coco", doc_anchor="coco-caption", prompt=PROMPT, read=read, score=caption_scorer(),
    primary_metric="CIDEr", table_metrics=("CIDEr", "BLEU-4"), paper=None,
    paper_split="– (no COCO number in the paper)",
    released="Karpathy val (image_cap_cococap.py: coco_karpathy_val.json)",
    splits={"test": "Karpathy test, 5000 images", "val": "Karpathy val, 5000 images (the released script's)"})
