"""nocaps: validation (4500 Open Images images, 10 captions each) scored here -- CIDEr, overall and per domain --
and, for both splits, the EvalAI results file; the test split (10600 images) is scored only by the server."""
from pathlib import Path

from onellm.evaluation.benchmark import CAPTION_PROMPT, Benchmark, caption_scorer, coco_caption_records, load_json, \
    request
from onellm.evaluation.submission import nocaps_results

PROMPT = CAPTION_PROMPT.format(noun="image")  # paper Tab. 11
VAL_CAPTIONS = "nocaps_val_4500_captions.json"  # image info + the public validation captions
IMAGE_INFO = {"val": "nocaps_val_image_info.json", "test": "nocaps_test_image_info.json"}  # nocaps.org/download


def _image(img: dict) -> list[dict]:
    return [{"modality": "image", "path": f"images/{img['file_name']}"}]


def read(root: Path, split: str = "val") -> list:
    if split == "val":
        return coco_caption_records(root / VAL_CAPTIONS, PROMPT, _image, root)
    images = load_json(root / IMAGE_INFO["test"], "nocaps test image info")["images"]
    return [request(img["id"], _image(img), PROMPT, "caption", root) for img in images]


def submit(answers, root: Path, split: str):
    """Every image of the split's image info (for val, the captions file holds the same image list)."""
    info = root / IMAGE_INFO[split]
    source = info if info.is_file() or split == "test" else root / VAL_CAPTIONS
    images = load_json(source, f"nocaps {split} image info")["images"]
    return nocaps_results(answers, [img["id"] for img in images], split)


BENCHMARK = Benchmark(
    name="nocaps", modality="image", description="nocaps captioning (in/near/out-domain)",
    data_dir="nocaps", doc_anchor="nocaps", prompt=PROMPT, read=read, score=caption_scorer(group_by="domain"),
    primary_metric="CIDEr", paper={"CIDEr": 115.9}, paper_split="val*", paper_table="Tab. 1",
    splits={"val": "validation, 4500 images, scored here (+ EvalAI file)", "test": "test, 10600 images, EvalAI"},
    remote_splits=frozenset({"test"}), submit=submit, breakdown="domain")
