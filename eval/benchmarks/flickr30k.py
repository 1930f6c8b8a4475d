"""Flickr30K Karpathy test split (1000 images, 5 captions each): CIDEr."""
from pathlib import Path

from onellm.evaluation.benchmark import (CAPTION_PROMPT, Benchmark, caption_scorer, first_existing,
                                         karpathy_records)

PROMPT = CAPTION_PROMPT.format(noun="image")  # paper Tab. 11


def read(root: Path, split: str = "test") -> list:
    images = first_existing(root, ["flickr30k-images", "images"], "Flickr30K image folder")
    return karpathy_records(root / "dataset_flickr30k.json", images, PROMPT, split=split)


BENCHMARK = Benchmark(
    name="flickr30k", modality="image", description="Flickr30K Karpathy test split captioning",
    data_dir="flickr30k", doc_anchor="flickr30k", prompt=PROMPT, read=read, score=caption_scorer(),
    primary_metric="CIDEr", paper={"CIDEr": 78.6},
    paper_split="Karpathy test*", paper_table="Tab. 1",
    splits={"test": "Karpathy test, 1000 images", "val": "Karpathy val, 1014 images"})
