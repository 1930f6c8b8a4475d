"""MM-Vet (v1, 218 questions): answered here as the released ``image_bench_mmvet.py`` asks them (the original
question, up to 256 new tokens); graded by the official GPT-4 grader from the ``{question id: answer}`` file this
writes (onellm.evaluation.submission.mmvet_results). No API key is used here."""
from pathlib import Path

from onellm.evaluation.benchmark import Benchmark, load_json, request, require
from onellm.evaluation.submission import mmvet_results
from onellm.generation import GenerationConfig

PROMPT = "{question}"  # the released script passes the question as it is


def _questions(root: Path) -> dict:
    # mm-vet.json: {"v1_0": {"imagename": "v1_0.png", "question": ..., "answer": ..., "capability": [...]}, ...}
    return load_json(root / "mm-vet.json", "MM-Vet metadata (mm-vet.zip)")


def read(root: Path) -> list:
    require(root / "images", "MM-Vet image folder")
    return [request(qid, [{"modality": "image", "path": f"images/{q['imagename']}"}], q["question"], "qa", root,
                    answer=q.get("answer"), capability=list(q.get("capability", [])))
            for qid, q in _questions(root).items()]


def submit(answers, root: Path, split: str):
    return mmvet_results(answers, list(_questions(root)), data_dir=str(root))


def no_local_score(predictions, records) -> dict:
    return {}  # the grader is GPT-4 (its prompt compares each answer with the reference); see submit()


BENCHMARK = Benchmark(
    name="mmvet", modality="image", description="MM-Vet (GPT-4 graded; file for the official grader)",
    data_dir="mm-vet", doc_anchor="mm-vet", prompt=PROMPT, read=read, score=no_local_score,
    primary_metric="total", paper={"total": 29.1}, paper_split="v1, 218 questions", paper_table="Tab. 1",
    released="v1, 218 questions (image_bench_mmvet.py: mm-vet.json)",
    splits={"v1": "MM-Vet v1, 218 questions, official GPT-4 grader"}, remote_splits=frozenset({"v1"}),
    submit=submit, gen=GenerationConfig(max_new_tokens=256))  # released: max_gen_len 256
