"""VQAv2: val2014 scored here (VQA soft accuracy); test-dev / test-std answered here and scored by the EvalAI server
(the paper's 71.6 is test-dev), from the file this writes (onellm.evaluation.submission.vqav2_results)."""
from pathlib import Path

from onellm.evaluation.benchmark import SHORT_ANSWER, Benchmark, answered, load_json, request, require
from onellm.evaluation.metrics import mean_metric, vqa_accuracy
from onellm.evaluation.submission import vqav2_results

PROMPT = SHORT_ANSWER  # "{question}\nAnswer the question using a single word or phrase."
# split -> question file (visualqa.org download page); test-dev2015 is a subset of test2015, images in test2015/.
QUESTIONS = {"val": "v2_OpenEnded_mscoco_val2014_questions.json",
             "test-dev": "v2_OpenEnded_mscoco_test-dev2015_questions.json",
             "test-std": "v2_OpenEnded_mscoco_test2015_questions.json"}
IMAGES = {"val": ("val2014", "COCO_val2014"), "test-dev": ("test2015", "COCO_test2015"),
          "test-std": ("test2015", "COCO_test2015")}


def _questions(root: Path, split: str) -> list[dict]:
    return load_json(root / QUESTIONS[split], f"VQAv2 {split} questions")["questions"]


def read(root: Path, split: str = "val") -> list:
    questions = _questions(root, split)
    folder, prefix = IMAGES[split]
    require(root / folder, f"COCO {folder} image folder")
    by_qid = {}
    if split == "val":  # the test answers are not public
        anns = load_json(root / "v2_mscoco_val2014_annotations.json", "VQAv2 annotations")["annotations"]
        by_qid = {a["question_id"]: a for a in anns}
    records = []
    for q in questions:
        image = {"modality": "image", "path": f"{folder}/{prefix}_{q['image_id']:012d}.jpg"}
        prompt = PROMPT.format(question=q["question"])
        if split != "val":
            records.append(request(q["question_id"], [image], prompt, "qa", root))
            continue
        a = by_qid[q["question_id"]]
        records.append(request(q["question_id"], [image], prompt, "qa", root,
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


def submit(answers, root: Path, split: str):
    """test-dev / test-std: every question of the split's file; for test-dev also the rest of test2015 (empty)
    when that file is there, as LLaVA's converter writes it."""
    if split == "val":
        return None
    ids = [q["question_id"] for q in _questions(root, split)]
    pad = []
    if split == "test-dev" and (root / QUESTIONS["test-std"]).is_file():
        pad = [q["question_id"] for q in _questions(root, "test-std")]
    return vqav2_results(answers, ids, split, pad_ids=pad)


BENCHMARK = Benchmark(
    name="vqav2", modality="image", description="VQAv2 open-ended VQA", data_dir="vqav2",
    doc_anchor="vqav2", prompt=PROMPT, read=read, score=score, primary_metric="accuracy",
    paper={"accuracy": 71.6}, paper_split="test-dev*", paper_table="Tab. 1",
    splits={"val": "val2014, 214,354 questions, scored here",
            "test-dev": "test-dev2015, 107,394 questions, EvalAI",
            "test-std": "test2015, 447,793 questions, EvalAI"},
    remote_splits=frozenset({"test-dev", "test-std"}), submit=submit, breakdown="answer type")
