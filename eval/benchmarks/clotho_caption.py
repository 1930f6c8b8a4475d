"""Clotho v2 evaluation split (1045 clips, 5 captions each): CIDEr and SPIDEr (= mean of CIDEr and SPICE; SPICE
needs its jars, see docs/evaluation.md)."""
from pathlib import Path

from onellm.evaluation.benchmark import (CAPTION_PROMPT, Benchmark, caption_scorer, coco_caption_records,
                                         read_csv, request)

PROMPT = CAPTION_PROMPT.format(noun="audio")  # = audio_cap_clothov2.py
CAPTIONS = [f"caption_{k}" for k in range(1, 6)]


def read(root: Path) -> list:
    coco = root / "eval_clothocap_ann.json"  # the released script's COCO-format copy, used when the csv is absent
    if coco.exists() and not (root / "clotho_captions_evaluation.csv").exists():
        return coco_caption_records(coco, PROMPT, lambda a: [{"modality": "audio",
                                                              "path": f"evaluation/{a['file_name']}"}], root)
    rows = read_csv(root / "clotho_captions_evaluation.csv", "Clotho evaluation captions", ["file_name", *CAPTIONS])
    return [request(r["file_name"], [{"modality": "audio", "path": f"evaluation/{r['file_name']}"}], PROMPT,
                    "caption", root, references=[r[c].strip() for c in CAPTIONS if r[c].strip()]) for r in rows]


BENCHMARK = Benchmark(
    name="clotho_caption", modality="audio", description="Clotho v2 evaluation split audio captioning",
    data_dir="clotho", doc_anchor="clotho-caption", prompt=PROMPT, read=read, score=caption_scorer(),
    primary_metric="CIDEr", table_metrics=("CIDEr", "SPIDEr"), paper={"CIDEr": 29.1, "SPIDEr": 19.5},
    paper_split="evaluation", paper_table="Tab. 3",
    released="evaluation (audio_cap_clothov2.py: eval_clothocap_ann.json)",
    splits={"evaluation": "Clotho v2 evaluation, 1045 clips"})
