"""MSVD-QA test (13157 questions): the released script's lenient accuracy (one string contains the other) and
strict exact match."""
from pathlib import Path

from onellm.evaluation.benchmark import SHORT_ANSWER, Benchmark, accuracy_scorer, load_json, request, require
from onellm.evaluation.metrics import exact_match, lenient_match

PROMPT = SHORT_ANSWER  # video_qa_msvd.py


def read(root: Path) -> list:
    items = load_json(root / "test_qa.json", "MSVD-QA questions")
    mapping = require(root / "youtube_mapping.txt", "MSVD youtube_mapping.txt")
    names = {vid: name for name, vid in (line.split() for line in mapping.read_text().splitlines() if line.strip())}
    records = []
    for q in items:
        vid = str(q["video_id"])
        vid = vid if vid.startswith("vid") else f"vid{vid}"  # the original release stores the number only
        video = {"modality": "video", "path": f"YouTubeClips/{names[vid]}.avi"}
        records.append(request(q["id"], [video], PROMPT.format(question=q["question"]), "qa", root,
                               answer=q["answer"]))
    return records


BENCHMARK = Benchmark(
    name="msvd_qa", modality="video", description="MSVD-QA test", data_dir="msvd_qa", doc_anchor="msvd-qa",
    prompt=PROMPT, read=read,
    score=accuracy_scorer(lenient_acc=lambda p, r: lenient_match(p, r.answer),
                          exact_acc=lambda p, r: exact_match(p, r.answer)),
    primary_metric="lenient_acc", table_metrics=("lenient_acc", "exact_acc"), paper={"lenient_acc": 56.5},
    paper_split="test", paper_table="Tab. 2", released="test (video_qa_msvd.py: test_qa.json)",
    splits={"test": "test, 13,157 questions"})
