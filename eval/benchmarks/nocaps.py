"""nocaps validation (4500 Open Images images, 10 captions each): CIDEr, overall and per domain."""
from pathlib import Path

from onellm.evaluation.benchmark import CAPTION_PROMPT, Benchmark, caption_scorer, coco_caption_records

PROMPT = CAPTION_PROMPT.format(noun="image")  # paper Tab. 11


def read(root: Path) -> list:
    return coco_caption_records(root / "nocaps_val_4500_captions.json", PROMPT,
                                lambda img: [{"modality": "image", "path": f"images/{img['file_name']}"}], root)


BENCHMARK = Benchmark(
    name="nocaps", modality="image", description="nocaps val captioning (in/near/out-domain)",
    data_dir="nocaps", doc_anchor="nocaps", prompt=PROMPT, read=read, score=caption_scorer(group_by="domain"),
    primary_metric="CIDEr", paper={"CIDEr": 115.9})
