"""PointLLM's Objaverse caption test (200 objects): BLEU-1, ROUGE-L, METEOR (Tab. 5; its GPT-4 scores are not
computed here)."""
from pathlib import Path

from onellm.evaluation.benchmark import Benchmark, caption_scorer, load_json, request

PROMPT = "What is this?"  # the released point_cap_pointllm.py; paper Tab. 11: "Provide a one-sentence caption ..."


def read(root: Path) -> list:
    items = load_json(root / "PointLLM_brief_description_val_200_GT.json", "PointLLM caption ground truth")
    records = []
    for it in items:
        caption = [t["value"] for t in it["conversations"] if t["from"] == "gpt"][-1]
        cloud = {"modality": "point", "path": f"8192_npy/{it['object_id']}_8192.npy"}
        records.append(request(it["object_id"], [cloud], PROMPT, "caption", root, references=[caption.strip()]))
    return records


BENCHMARK = Benchmark(
    name="objaverse_caption", modality="point", description="Objaverse (PointLLM split) 3D object captioning",
    data_dir="objaverse", doc_anchor="objaverse-caption", prompt=PROMPT, read=read, score=caption_scorer(),
    primary_metric="BLEU-1", table_metrics=("BLEU-1", "ROUGE-L", "METEOR"),
    paper={"BLEU-1": 42.2, "ROUGE-L": 45.3, "METEOR": 20.3},
    paper_split="PointLLM 200-object test", paper_table="Tab. 5",
    released="pointllm_test.json (point_cap_pointllm.py)",
    splits={"test": "PointLLM's 200 test objects"})
