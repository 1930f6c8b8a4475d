"""Submission files for the leaderboards scored elsewhere, checked field by field against the public format
descriptions, through the engine (predictions written beforehand, so no model runs) and the builders directly.

Formats (the sources the code cites):
* VQAv2 -- visualqa.org/evaluation.html: ``results = [result]``, ``result{"question_id": int, "answer": str}``;
  one entry per question of the phase's question file; EvalAI challenge 830.
* NoCaps -- the nocaps team's updown-baseline (``Prediction = {"image_id": int, "caption": str}``), one entry per
  image of ``nocaps_<split>_image_info.json``; EvalAI challenge 355, phases 742 (val) / 743 (test).
* MM-Vet -- the official grader ``mm-vet_evaluator.py`` reads ``results[id]`` for every key of ``mm-vet.json``:
  a JSON object ``{"v1_0": str, ...}``.
"""
import json
from pathlib import Path

import pytest

from onellm.evaluation import submission
from onellm.evaluation.engine import benchmarks_dir, load_benchmarks, run_benchmarks

from eval_fixtures import VQAV2_TEST, write_mmvet, write_nocaps, write_vqav2

BENCHMARKS = load_benchmarks(benchmarks_dir())
pytestmark = pytest.mark.filterwarnings("ignore:java not found")


@pytest.fixture(autouse=True)
def no_java(monkeypatch):
    """nocaps val is scored too: the pure-Python caption path (Java's is test_eval's and test_metrics')."""
    from onellm.evaluation import metrics

    monkeypatch.setattr(metrics, "java_available", lambda: False)

# the public descriptions, as data: field -> type
VQAV2_RESULT = {"question_id": int, "answer": str}
NOCAPS_RESULT = {"image_id": int, "caption": str}


def check_entries(payload, fields: dict) -> None:
    """A JSON list of objects with exactly ``fields``, each of its type (bool is not an int here)."""
    assert isinstance(payload, list) and payload
    for entry in payload:
        assert isinstance(entry, dict) and set(entry) == set(fields), entry
        for name, kind in fields.items():
            assert type(entry[name]) is kind, (name, entry)


def prewrite(out: Path, folder: str, answers: dict[str, str | None]) -> None:
    """Predictions already there (None: an input that failed), so the engine loads no model."""
    path = out / folder / "predictions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": k, "answer": v} if v is not None else {"id": k, "error": "bad"})
                            + "\n" for k, v in answers.items()))


def run(tmp_path, name, data, split, answers, folder):
    out = tmp_path / "out"
    prewrite(out, folder, answers)
    (tmp_path / "model").mkdir(exist_ok=True)
    rows = run_benchmarks(str(tmp_path / "model"), name, data, out, split=split, progress=False)
    assert len(rows) == 1
    return out, rows[0]


def test_vqav2_test_dev_file(tmp_path):
    write_vqav2(tmp_path / "vqav2")
    out, row = run(tmp_path, "vqav2", tmp_path / "vqav2", "test-dev", {"1000": "  Two\nplates ", "1001": "no"},
                   "vqav2-test-dev")
    path = out / "vqav2-test-dev" / "vqav2_test-dev_results.json"
    assert row["status"] == "submission" and row["submission"]["file"] == str(path)
    payload = json.loads(path.read_text())
    check_entries(payload, VQAV2_RESULT)
    # every test-dev question, in the file's order, then the rest of test2015 (empty), as LLaVA's converter
    assert [e["question_id"] for e in payload] == [1000, 1001, 2000]
    assert [e["answer"] for e in payload] == ["Two plates", "no", ""]  # as generated, one line; the server normalises
    assert row["submission"]["n_answered"] == row["submission"]["n_total"] == 2
    assert "challenge 830" in row["submission"]["upload"] and "test-dev2015" in row["submission"]["upload"]
    assert row["metrics"] == {}  # no public answers: nothing scored here
    table = (out / "results.md").read_text()
    assert "vqav2_test-dev_results.json" in table and "| test-dev |" in table


def test_vqav2_test_std_file_and_incomplete_run(tmp_path):
    write_vqav2(tmp_path / "vqav2")
    out, row = run(tmp_path, "vqav2", tmp_path / "vqav2", "test-std", {"1000": None, "1001": None, "2000": "3"},
                   "vqav2-test-std")
    payload = json.loads((out / "vqav2-test-std" / "vqav2_test-std_results.json").read_text())
    check_entries(payload, VQAV2_RESULT)
    assert [e["question_id"] for e in payload] == [q for _, q, _ in VQAV2_TEST]
    assert row["submission"]["n_answered"] == 1 and row["submission"]["n_total"] == 3
    assert "test-std2015" in row["submission"]["upload"]


def test_vqav2_test_dev_without_test2015_file(tmp_path):
    write_vqav2(tmp_path / "vqav2")
    (tmp_path / "vqav2" / "v2_OpenEnded_mscoco_test2015_questions.json").unlink()
    sub = BENCHMARKS["vqav2"].submit({"1000": "yes"}, tmp_path / "vqav2", "test-dev")
    assert [e["question_id"] for e in sub.payload] == [1000, 1001] and sub.n_total == 2
    assert BENCHMARKS["vqav2"].submit({}, tmp_path / "vqav2", "val") is None  # val: scored here, no server


def test_nocaps_test_and_val_files(tmp_path):
    write_nocaps(tmp_path / "nocaps")
    out, row = run(tmp_path, "nocaps", tmp_path / "nocaps", "test",
                   {"0": "a fox", "1": None, "2": "a dog\non grass"}, "nocaps-test")
    payload = json.loads((out / "nocaps-test" / "nocaps_test_results.json").read_text())
    check_entries(payload, NOCAPS_RESULT)
    info = json.loads((tmp_path / "nocaps" / "nocaps_test_image_info.json").read_text())["images"]
    assert [e["image_id"] for e in payload] == [img["id"] for img in info]
    assert [e["caption"] for e in payload] == ["a fox", "", "a dog on grass"]
    assert "challenge 355" in row["submission"]["upload"] and "phase 743" in row["submission"]["upload"]
    assert row["status"] == "submission" and row["metrics"] == {}
    # val: scored here (public captions) and the EvalAI file as well
    out, row = run(tmp_path, "nocaps", tmp_path / "nocaps", None, {"0": "a red fox", "1": "a fox in snow"},
                   "nocaps")
    assert row["status"] == "ok" and "CIDEr" in row["metrics"] and "in-domain/CIDEr" in row["metrics"]
    payload = json.loads((out / "nocaps" / "nocaps_val_results.json").read_text())
    check_entries(payload, NOCAPS_RESULT)
    assert [e["image_id"] for e in payload] == [0, 1] and "phase 742" in row["submission"]["upload"]


def test_mmvet_file_is_what_the_grader_reads(tmp_path):
    ids = write_mmvet(tmp_path / "mm-vet")
    answers = {"v1_0": "x = -1 or x = -5.\nSo both.", "v1_1": "Motorola"}
    out, row = run(tmp_path, "mmvet", tmp_path / "mm-vet", None, answers, "mmvet")
    payload = json.loads((out / "mmvet" / "mmvet_results.json").read_text())
    data = json.loads((tmp_path / "mm-vet" / "mm-vet.json").read_text())
    assert isinstance(payload, dict) and list(payload) == list(data) == ids
    for qid in data:  # the grader's access pattern: results[id] for every id of mm-vet.json
        assert isinstance(payload[qid], str)
    assert payload == answers  # free text kept as generated (line breaks too)
    assert row["status"] == "submission" and "mm-vet_evaluator.py" in row["submission"]["upload"]
    assert "--model mmvet_results" in row["submission"]["upload"]
    bench = BENCHMARKS["mmvet"]
    assert bench.gen.max_new_tokens == 256 and bench.paper == {"total": 29.1}  # released script; paper Tab. 1
    records = bench.read(tmp_path / "mm-vet")
    assert [r.prompt for r in records] == [q["question"] for q in data.values()]  # the question as it is


def test_builders_reject_wrong_splits_and_count():
    with pytest.raises(ValueError, match="not scored by the server"):
        submission.vqav2_results({}, [1], "val")
    with pytest.raises(ValueError, match="unknown split"):
        submission.nocaps_results({}, [1], "train")
    sub = submission.vqav2_results({"7": "yes", "8": "  "}, [7, 8, 9], "test-dev", pad_ids=[9, 10])
    assert [e["question_id"] for e in sub.payload] == [7, 8, 9, 10]  # no id twice
    assert (sub.n_answered, sub.n_total, sub.complete) == (1, 3, False)
    sub = submission.mmvet_results({"v1_0": "a"}, ["v1_0", "v1_1"])
    assert sub.payload == {"v1_0": "a", "v1_1": ""} and not sub.complete
