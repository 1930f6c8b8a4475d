"""Result files for the benchmarks scored elsewhere: an evaluation server (VQAv2 test-dev / test-std, NoCaps) or
an external grader (MM-Vet's GPT-4 grader), in the exact format each expects.

Each builder takes ``{request id: answer}`` and the full id list of the split's own annotation file, and returns
a :class:`SubmissionFile`: one entry per id of that file, in its order (servers reject partial files), with ``""``
for an id that has no answer (an input that failed, or a ``--limit`` run; counted in ``n_answered`` / ``n_total``
so the CLI can say the file is incomplete). VQAv2 / NoCaps answers are written as generated, on one line: the
servers apply their own normalisation, and normalising twice is not always the same as once.

Formats (sources in the comments of each builder):

* VQAv2: ``[{"question_id": int, "answer": str}, ...]`` -- EvalAI challenge 830.
* NoCaps: ``[{"image_id": int, "caption": str}, ...]`` -- EvalAI challenge 355.
* MM-Vet: ``{"v1_0": str, "v1_1": str, ...}`` -- the official ``mm-vet_evaluator.py``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SubmissionFile", "VQAV2_PHASES", "mmvet_results", "nocaps_results", "one_line", "vqav2_results"]

VQAV2_URL = "https://eval.ai/web/challenges/challenge-page/830/submission"
# split -> EvalAI phase of the VQA Challenge 2021 (challenge 830) and the question file it covers.
VQAV2_PHASES = {"test-dev": "test-dev2015", "test-std": "test-std2015"}
NOCAPS_URL = "https://eval.ai/web/challenges/challenge-page/355/submission"
# EvalAI phase ids of the nocaps challenge, from the nocaps team's updown-baseline (updown/utils/evalai.py).
NOCAPS_PHASE_IDS = {"val": 742, "test": 743}
MMVET_GRADER = "https://github.com/yuweihao/MM-Vet (mm-vet_evaluator.py)"


@dataclass(frozen=True)
class SubmissionFile:
    """A file to hand to a server or grader: its name, JSON content, where it goes, how complete it is."""

    filename: str
    payload: Any  # JSON-serialisable
    upload: str  # where and how to submit it (one or two sentences)
    n_answered: int  # ids of the split that have a (non-empty) answer
    n_total: int  # ids of the split

    @property
    def complete(self) -> bool:
        return self.n_answered == self.n_total


def one_line(text: str) -> str:
    """The answer on one line with single spaces (a caption or answer file holds one line per entry)."""
    return " ".join(str(text).split())


def _answer(answers: Mapping[str, str], rid: Any) -> str:
    return one_line(answers.get(str(rid), ""))


def _count(answers: Mapping[str, str], ids: Iterable[Any]) -> int:
    return sum(1 for i in ids if _answer(answers, i))


def vqav2_results(answers: Mapping[str, str], question_ids: Sequence[int], split: str,
                  pad_ids: Sequence[int] = ()) -> SubmissionFile:
    """The VQA results format (visualqa.org/evaluation.html: ``results = [result]``, ``result = {"question_id":
    int, "answer": str}``), one entry per question of the split's question file (test-dev:
    ``v2_OpenEnded_mscoco_test-dev2015_questions.json``, test-std: ``v2_OpenEnded_mscoco_test2015_questions.json``).

    ``pad_ids``: further question ids written with ``""`` after the split's own -- for test-dev, the rest of
    test2015, as LLaVA's ``scripts/convert_vqav2_for_submission.py`` does, so one file is accepted by every
    phase (test-dev is a subset of test2015 and the server scores only the phase's questions)."""
    if split not in VQAV2_PHASES:
        raise ValueError(f"vqav2_results: split {split!r} is not scored by the server ({', '.join(VQAV2_PHASES)})")
    own = [int(q) for q in question_ids]
    seen = set(own)
    rows = [{"question_id": q, "answer": _answer(answers, q)} for q in own]
    rows += [{"question_id": int(q), "answer": ""} for q in pad_ids if int(q) not in seen]
    upload = (f"upload to EvalAI challenge 830 (VQA Challenge 2021), phase {VQAV2_PHASES[split]}: {VQAV2_URL} "
              "(or `evalai challenge 830 phase <phase id> submit --file FILE`)")
    return SubmissionFile(f"vqav2_{split}_results.json", rows, upload, _count(answers, own), len(own))


def nocaps_results(answers: Mapping[str, str], image_ids: Sequence[int], split: str) -> SubmissionFile:
    """The nocaps EvalAI format: ``[{"image_id": int, "caption": str}]`` (the COCO results format; the nocaps
    team's updown-baseline, ``Prediction = TypedDict({"image_id": int, "caption": str})``), one entry per image of
    ``nocaps_<split>_image_info.json``."""
    if split not in NOCAPS_PHASE_IDS:
        raise ValueError(f"nocaps_results: unknown split {split!r} ({', '.join(NOCAPS_PHASE_IDS)})")
    ids = [int(i) for i in image_ids]
    rows = [{"image_id": i, "caption": _answer(answers, i)} for i in ids]
    upload = (f"upload to EvalAI challenge 355 (nocaps), phase {split}: {NOCAPS_URL} "
              f"(or `evalai challenge 355 phase {NOCAPS_PHASE_IDS[split]} submit --file FILE`)")
    return SubmissionFile(f"nocaps_{split}_results.json", rows, upload, _count(answers, ids), len(ids))


def mmvet_results(answers: Mapping[str, str], question_ids: Sequence[str],
                  data_dir: str = "MM_VET_DIR") -> SubmissionFile:
    """What the official grader reads: ``{question id: answer}`` for every key of ``mm-vet.json`` (its
    ``runs()`` looks up ``results[id]`` for each one, so a missing key would stop it; its own example is
    ``results/llava_llama2_13b_chat.json``). Answers keep their line breaks: they are long free text the grader
    passes to GPT-4 as they are."""
    ids = [str(q) for q in question_ids]
    payload = {q: str(answers.get(q, "")) for q in ids}
    upload = (f"grade it with the official MM-Vet grader, {MMVET_GRADER}: `python mm-vet_evaluator.py "
              f"--mmvet_path {data_dir} --result_path <the folder of this file> --model mmvet_results` (needs an "
              "OpenAI API key: GPT-4 grades every answer), or upload it to the Hugging Face Space "
              "whyu/MM-Vet_Evaluator")
    return SubmissionFile("mmvet_results.json", payload, upload, sum(1 for q in ids if payload[q].strip()), len(ids))
