"""The benchmark definition contract (``eval/benchmarks/<name>.py`` defines ``BENCHMARK = Benchmark(...)``) and the
readers and scorers the definitions share.

A definition turns a dataset folder, laid out as the public release ships it (docs/evaluation.md), into
:class:`~onellm.data.manifest.Record` requests and scores the answers:

* ``read(root, **options) -> list[Record]``: one request per item, ``prompt`` already built from the benchmark's
  prompt template, ground truth in ``record.answer`` / ``record.extra`` and ``extra["task"]`` set to
  ``"caption"``, ``"qa"`` or ``"classification"`` (with ``--template none`` the engine keeps only caption requests
  and gives them an empty prompt). Missing files raise :class:`DataNotFound`.
* ``score(predictions, records) -> {metric: value}``: ``predictions`` maps the ids answered without error to the
  answer text; only those records are scored (items whose input failed are counted as errors by the engine).
  Values are percentages (0-100; CIDEr x 100), the paper's scale.
"""
from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.manifest import Record, parse_record
from ..generation import GenerationConfig
from .metrics import caption_metrics, classification_accuracy, mean_metric

Predictions = Mapping[str, str]
ScoreFn = Callable[[Predictions, Sequence[Record]], dict[str, float]]

CAPTION_PROMPT = "Provide a one-sentence caption for the provided {noun}."  # paper Tab. 11
SHORT_ANSWER = "{question}\nAnswer the question using a single word or phrase."  # released scripts (spec §5)


class DataNotFound(FileNotFoundError):
    """A benchmark's dataset folder or annotation file is missing; ``path`` is what was expected."""

    def __init__(self, path: str | Path, what: str):
        self.path, self.what = Path(path), what
        super().__init__(f"{what} not found: expected {path}")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: where its data lives, how it is asked, decoded and scored, and the paper's number(s)."""

    name: str  # = the definition's file stem; predictions go to OUTPUT/<name>/
    modality: str  # as shown in the table: "image", "video+audio", "all"
    description: str
    data_dir: str  # sub-folder of a multi-benchmark --data root (benchmarks may share one)
    doc_anchor: str  # docs/evaluation.md#<doc_anchor>
    prompt: str  # the prompt template, for documentation; read() applies it
    read: Callable[..., list[Record]]  # read(root: Path, **options) -> records
    score: ScoreFn
    primary_metric: str
    table_metrics: tuple[str, ...] = ()  # metrics shown in results.md; default: (primary_metric,)
    paper: Mapping[str, float] | None = None  # released OneLLM-7B (spec §5); None: the paper reports none
    gen: GenerationConfig = field(default_factory=GenerationConfig)  # released scripts: 0.1 / 0.75 / 128
    template: str = "chat"
    select: Callable[[list[Record], int], list[Record]] | None = None  # --limit K; default: the first K

    @property
    def shown_metrics(self) -> tuple[str, ...]:
        return self.table_metrics or (self.primary_metric,)

    @property
    def doc_link(self) -> str:
        return f"docs/evaluation.md#{self.doc_anchor}"


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------
def require(path: Path, what: str) -> Path:
    """``path`` if it exists, else :class:`DataNotFound`."""
    if not path.exists():
        raise DataNotFound(path, what)
    return path


def first_existing(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``root/<name>`` that exists (alternative names of one folder or file)."""
    for name in names:
        if (root / name).exists():
            return root / name
    raise DataNotFound(root / names[0], what)


def load_json(path: Path, what: str) -> Any:
    require(path, what)
    with path.open(encoding="utf-8") as f:
        return json.load(f)


def read_csv(path: Path, what: str, columns: Sequence[str]) -> list[dict[str, str]]:
    """Rows of a CSV with a header holding ``columns`` (utf-8, BOM tolerated)."""
    require(path, what)
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {reader.fieldnames}")
        return list(reader)


def request(rid: Any, inputs: Sequence[Mapping[str, Any]], prompt: str, task: str, root: Path,
            answer: str | None = None, **extra: Any) -> Record:
    """A validated request record; relative input paths resolve against ``root``."""
    obj = {"id": str(rid), "inputs": [dict(i) for i in inputs], "prompt": prompt, "task": task, **extra}
    if answer is not None:
        obj["answer"] = str(answer)
    return parse_record(obj, root)


# ----------------------------------------------------------------------------------------------------------------
# Readers of the common annotation formats
# ----------------------------------------------------------------------------------------------------------------
def karpathy_records(ann: Path, media_dir: Path, prompt: str, split: str = "test",
                     id_key: str | None = None) -> list[Record]:
    """Karpathy-split captions (``dataset_coco.json`` / ``dataset_flickr30k.json``): ``images[*]`` with ``filename``
    (+ ``filepath`` for COCO), ``split`` and ``sentences[*].raw``; the image is ``media_dir/[filepath/]filename``."""
    data = load_json(ann, "Karpathy split annotation")
    records = []
    for img in data["images"]:
        if img.get("split") != split:
            continue
        rel = Path(img.get("filepath", "")) / img["filename"]
        rid = img[id_key] if id_key else Path(img["filename"]).stem
        refs = [s["raw"].strip() for s in img["sentences"]]
        records.append(request(rid, [{"modality": "image", "path": str(media_dir / rel)}], prompt, "caption",
                               media_dir, references=refs))
    if not records:
        raise ValueError(f"{ann}: no images in split {split!r}")
    return records


def coco_caption_records(ann: Path, prompt: str, inputs: Callable[[Mapping[str, Any]], list[dict]],
                         root: Path) -> list[Record]:
    """COCO caption format (``images[*].id`` + ``annotations[*].{image_id, caption}``); ``inputs(image_entry)``
    gives the request's inputs. Images without a caption are dropped (they cannot be scored)."""
    data = load_json(ann, "COCO-format caption annotation")
    refs: dict[Any, list[str]] = {}
    for a in data["annotations"]:
        refs.setdefault(a["image_id"], []).append(str(a["caption"]).strip())
    records = []
    for img in data["images"]:
        if img["id"] not in refs:
            continue
        extra = {"domain": img["domain"]} if "domain" in img else {}
        records.append(request(img["id"], inputs(img), prompt, "caption", root, references=refs[img["id"]],
                               **extra))
    return records


def majority(answers: Iterable[str]) -> str:
    """The most frequent answer (normalised: lower case, stripped); ties go to the one given first."""
    counts: dict[str, int] = {}
    for a in answers:
        key = " ".join(a.lower().split())
        counts[key] = counts.get(key, 0) + 1
    return max(counts, key=counts.__getitem__)  # max keeps the first of equal counts (insertion order)


# ----------------------------------------------------------------------------------------------------------------
# Scorers
# ----------------------------------------------------------------------------------------------------------------
def answered(predictions: Predictions, records: Sequence[Record]) -> list[tuple[Record, str]]:
    """(record, answer) for the records that have an answer."""
    return [(r, predictions[r.id]) for r in records if r.id in predictions]


def caption_scorer(keep: Sequence[str] | None = None, group_by: str | None = None) -> ScoreFn:
    """Score ``extra["references"]`` with :func:`caption_metrics` (x 100). ``keep``: report only these metrics
    (when computed); ``group_by``: also CIDEr per value of that extra key (e.g. nocaps ``domain``)."""

    def score(predictions: Predictions, records: Sequence[Record]) -> dict[str, float]:
        pairs = answered(predictions, records)
        if not pairs:
            return {}
        preds = {r.id: a for r, a in pairs}
        refs = {r.id: r.extra["references"] for r, _ in pairs}
        out = {k: 100 * v for k, v in caption_metrics(preds, refs).items() if keep is None or k in keep}
        if group_by:
            groups: dict[str, list[str]] = {}
            for r, _ in pairs:
                groups.setdefault(str(r.extra.get(group_by)), []).append(r.id)
            for g, ids in sorted(groups.items()):
                sub = caption_metrics({i: preds[i] for i in ids}, {i: refs[i] for i in ids})
                out[f"{g}/CIDEr"] = 100 * sub["CIDEr"]
        return out

    return score


def accuracy_scorer(**metrics: Callable[[str, Record], float]) -> ScoreFn:
    """Mean per-item score x 100 for each ``name=fn(prediction, record)``."""

    def score(predictions: Predictions, records: Sequence[Record]) -> dict[str, float]:
        pairs = answered(predictions, records)
        if not pairs:
            return {}
        return {name: 100 * mean_metric(fn(a, r) for r, a in pairs) for name, fn in metrics.items()}

    return score


# ----------------------------------------------------------------------------------------------------------------
# Zero-shot scene classification on depth / normal maps (NYUv2, SUN RGB-D; layout in docs/evaluation.md)
# ----------------------------------------------------------------------------------------------------------------
SCENE_PROMPT = "{classes} What is the category of this scene? Choice one class from the class sets."  # Tab. 11
# NYUv2: the 9 most frequent scene types + "others" (the 10-class protocol of Omnivore / ImageBind).
NYUV2_CLASSES = ("bedroom", "kitchen", "living_room", "bathroom", "dining_room", "office", "home_office",
                 "classroom", "bookstore", "others")
# SUN RGB-D: the 19 scene categories with > 80 images (Song et al., CVPR 2015).
SUNRGBD_CLASSES = ("bathroom", "bedroom", "classroom", "computer_room", "conference_room", "corridor", "dining_area",
                   "dining_room", "discussion_area", "furniture_store", "home_office", "kitchen", "lab",
                   "lecture_theatre", "library", "living_room", "office", "rest_space", "study_space")


def scene_records(root: Path, modality: str, default_classes: Sequence[str]) -> list[Record]:
    """``annotations.json`` = ``[{"id", "rgb", "depth", "normal", "label"}]`` (paths relative to ``root``) and an
    optional ``classes.txt`` (one class a line; default: ``default_classes``). ``modality``: "depth" | "normal"."""
    anns = load_json(root / "annotations.json", "scene annotation list")
    classes_txt = root / "classes.txt"
    classes = default_classes
    if classes_txt.exists():
        classes = [c.strip() for c in classes_txt.read_text(encoding="utf-8").splitlines() if c.strip()]
    prompt = SCENE_PROMPT.format(classes=", ".join(c.replace("_", " ") for c in classes))
    records = []
    for a in anns:
        if a["label"] not in classes:
            raise ValueError(f"{root / 'annotations.json'}: {a['id']}: label {a['label']!r} is not a class "
                             f"({', '.join(classes)})")
        if modality not in a:
            raise ValueError(f"{root / 'annotations.json'}: {a['id']} has no {modality!r} map")
        records.append(request(a["id"], [{"modality": modality, "path": a[modality], "rgb": a["rgb"]}], prompt,
                               "classification", root, answer=a["label"], classes=list(classes)))
    return records


def scene_scorer() -> ScoreFn:
    return accuracy_scorer(accuracy=lambda p, r: classification_accuracy(p, r.answer, r.extra["classes"]))
