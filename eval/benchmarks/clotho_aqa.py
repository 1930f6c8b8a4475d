"""Clotho-AQA test: each question is answered by 3 annotators (3 csv rows); accuracy = exact match with the
majority answer (ties: the first annotator's), plus the share matching any annotator."""
from pathlib import Path

from onellm.evaluation.benchmark import Benchmark, accuracy_scorer, majority, read_csv, request
from onellm.evaluation.metrics import exact_match

PROMPT = "{question} Answer the question using a single word or phrase."  # paper Tab. 11 (VQA-style)


def read(root: Path) -> list:
    rows = read_csv(root / "clotho_aqa_test.csv", "Clotho-AQA test csv",
                    ["file_name", "QuestionText", "answer"])
    grouped: dict[tuple[str, str], list[str]] = {}  # (file, question) -> answers, in file order
    for r in rows:
        grouped.setdefault((r["file_name"], r["QuestionText"].strip()), []).append(r["answer"].strip())
    per_file: dict[str, int] = {}
    records = []
    for (name, question), answers in grouped.items():
        k = per_file[name] = per_file.get(name, -1) + 1  # id: "<file>#<question index within the file>"
        records.append(request(f"{name}#{k}", [{"modality": "audio", "path": f"audio_files/{name}"}],
                               PROMPT.format(question=question), "qa", root, answer=majority(answers),
                               answers=answers))
    return records


BENCHMARK = Benchmark(
    name="clotho_aqa", modality="audio", description="Clotho-AQA test audio question answering",
    data_dir="clotho_aqa", doc_anchor="clotho-aqa", prompt=PROMPT, read=read,
    score=accuracy_scorer(accuracy=lambda p, r: exact_match(p, r.answer),
                          accuracy_any=lambda p, r: max(exact_match(p, a) for a in r.extra["answers"])),
    primary_metric="accuracy", paper={"accuracy": 57.9},
    paper_split="test*", paper_table="Tab. 3", splits={"test": "Clotho-AQA test"})
