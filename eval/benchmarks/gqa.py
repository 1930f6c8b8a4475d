"""GQA test-dev balanced (12578 questions): exact match with the single answer."""
from pathlib import Path

from onellm.evaluation.benchmark import SHORT_ANSWER, Benchmark, accuracy_scorer, load_json, request
from onellm.evaluation.metrics import exact_match

PROMPT = SHORT_ANSWER


def read(root: Path) -> list:
    questions = load_json(root / "testdev_balanced_questions.json", "GQA questions")
    return [request(qid, [{"modality": "image", "path": f"images/{q['imageId']}.jpg"}],
                    PROMPT.format(question=q["question"]), "qa", root, answer=q["answer"])
            for qid, q in questions.items()]


BENCHMARK = Benchmark(
    name="gqa", modality="image", description="GQA test-dev balanced", data_dir="gqa", doc_anchor="gqa",
    prompt=PROMPT, read=read, score=accuracy_scorer(accuracy=lambda p, r: exact_match(p, r.answer)),
    primary_metric="accuracy", paper={"accuracy": 59.5},
    paper_split="test-dev balanced*", paper_table="Tab. 1",
    splits={"testdev-balanced": "test-dev balanced, 12,578 questions"})
