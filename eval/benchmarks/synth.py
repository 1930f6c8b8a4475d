"""The synthetic world of ``onellm synth`` (``--data`` = a split folder holding requests.jsonl): per modality, the
caption attribute accuracy, the QA accuracy and the chance level; overall = the mean over modalities."""
from pathlib import Path

from onellm.data.manifest import read_manifest
from onellm.data.synth.world import ATTRIBUTES, attribute_accuracy, chance_level, names_value
from onellm.evaluation.benchmark import Benchmark, answered, require
from onellm.evaluation.metrics import mean_metric

PROMPT = "the manifest's own prompts: 'Describe this <noun>.' and one question per attribute"


def read(root: Path) -> list:
    return read_manifest(require(root / "requests.jsonl", "synthetic-world requests.jsonl (onellm synth)"))


def first_per_modality(records: list, k: int) -> list:
    """--limit K: the first K requests of each modality (the manifest is ordered by modality)."""
    seen: dict[str, int] = {}
    kept = []
    for r in records:
        seen[r.modality_key] = seen.get(r.modality_key, 0) + 1
        if seen[r.modality_key] <= k:
            kept.append(r)
    return kept


def qa_correct(answer: str, record) -> float:
    """The true value is named (whole words, any case) and no other value of that attribute is."""
    vocab = ATTRIBUTES[record.modality_key][record.extra["attribute"]]
    named = [v for v in vocab if names_value(answer, v)]
    return float(named == [record.answer])


def score(predictions, records) -> dict:
    out: dict[str, float] = {}
    by_modality: dict[str, list] = {}
    for r, p in answered(predictions, records):
        by_modality.setdefault(r.modality_key, []).append((r, p))
    for m, pairs in by_modality.items():
        caps = [attribute_accuracy(p, r.extra["attributes"], modality=m) for r, p in pairs
                if r.extra["task"] == "caption"]
        qas = [qa_correct(p, r) for r, p in pairs if r.extra["task"] == "qa"]
        if caps:
            out[f"{m}/caption_acc"] = 100 * mean_metric(caps)
        if qas:
            out[f"{m}/qa_acc"] = 100 * mean_metric(qas)
        out[f"{m}/chance"] = 100 * chance_level(m)
    for metric in ("caption_acc", "qa_acc", "chance"):
        values = [v for k, v in out.items() if k.endswith(f"/{metric}")]
        if values:
            out[metric] = mean_metric(values)
    return out


BENCHMARK = Benchmark(
    name="synth", modality="all", description="onellm synth world: attribute accuracy per modality",
    data_dir="synth", doc_anchor="synth", prompt=PROMPT, read=read, score=score, primary_metric="caption_acc",
    table_metrics=("caption_acc", "qa_acc", "chance"), paper=None, select=first_per_modality,
    splits={"test": "the split folder given (onellm synth --split test)"}, breakdown="modality")
