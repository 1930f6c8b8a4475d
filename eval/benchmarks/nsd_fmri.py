"""NSD subj01 test (MindEye split) fMRI captioning against the COCO captions of the seen image: CIDEr, ROUGE-L."""
from pathlib import Path

from onellm.evaluation.benchmark import Benchmark, caption_scorer, coco_caption_records

PROMPT = "Describe the scene based on fMRI data."  # paper; the released fmri_cap_nsd.py differs (docs)


def _inputs(img: dict) -> list[dict]:
    # The released script reads images[*].file_name; "fmri_path" is accepted too. Relative to the data folder.
    return [{"modality": "fmri", "path": img.get("file_name") or img["fmri_path"]}]


def read(root: Path) -> list:
    return coco_caption_records(root / "fmri_eval_cococap.json", PROMPT, _inputs, root)


BENCHMARK = Benchmark(
    name="nsd_fmri", modality="fmri", description="NSD subj01 test fMRI captioning", data_dir="nsd",
    doc_anchor="nsd-fmri", prompt=PROMPT, read=read, score=caption_scorer(), primary_metric="CIDEr",
    table_metrics=("CIDEr", "ROUGE-L"), paper={"CIDEr": 31.7, "ROUGE-L": 25.1},
    paper_split="subj01 test",
    released="subj01 test (fmri_cap_nsd.py: fmri_eval_cococap.json, not released: issue #16)",
    splits={"test": "subj01 test"})
