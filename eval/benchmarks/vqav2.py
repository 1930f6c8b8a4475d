"""VQAv2 val2014 (the paper's 71.6 is on test-dev, scored by the EvalAI server): VQA soft accuracy."""
from pathlib import Path

from onellm.evaluation.benchmark import SHORT_ANSWER, Benchmark, answered, load_json, request, require
from onellm.evaluation.metrics import mean_metric, vqa_accuracy

PROMPT = SHORT_ANSWER  # "{question}\nAnswer the question using a single word or phrase."


def read(root: Path) -> list:
    questions = load_json(root / "v2_OpenEnded_mscoco_val2014_questions.json", "VQAv2 questions")["questions"]
    anns = load_json(root / "v2_mscoco_val2014_annotations.json", "VQAv2 annotations")["annotations"]
    require(root / "val2014", "COCO val2014 image folder")
    by_qid = {a["question_id"]: a for a in anns}
    records = []
    for q in questions:
        a = by_qid[q["question_id"]]
        image = {"modality": "image", "path": f"val2014/COCO_val2014_{q['image_id']:012d}.jpg"}
        records.append(request(q["question_id"], [image], PROMPT.format(question=q["question"]), "qa", root,
                               answer=a["multiple_choice_answer"], answers=[x["answer"] for x in a["answers"]],
                               answer_type=a["answer_type"]))
    return records


def score(predictions, records) -> dict:
    pairs = answered(predictions, records)
    if not pairs:
        return {}
    out = {"accuracy": 100 * mean_metric(vqa_accuracy(p, r.extra["answers"]) for r, p in pairs)}
    for kind in sorted({r.extra["answer_type"] for r, _ in pairs}):  # "yes/no", "number", "other"
        out[f"{kind}/accuracy"] = 100 * mean_metric(vqa_accuracy(p, r.extra["answers"]) for r, p in pairs
                                                    if r.extra["answer_type"] == kind)
    return out


BENCHMARK = Benchmark(
    name="vqav2", modality="image", description="VQAv2 val open-ended VQA", data_dir="vqav2",
    doc_anchor="vqav2", prompt=PROMPT, read=read, score=score, primary_metric="accuracy",
    paper={"accuracy": 71.6})
