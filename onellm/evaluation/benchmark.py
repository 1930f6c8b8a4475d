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
  Values are percentages (0-100; CIDEr x 100), the paper's scale: every number ``onellm eval`` reports is one.
* ``splits`` (name -> description, the first is the default) says what ``--split`` may choose; ``read`` gets
  ``split=`` when there are several. A split in ``remote_splits`` has no public answers (or is graded by an
  external tool): nothing is scored locally and ``submit(answers, root, split)`` writes the file the server takes
  (:mod:`onellm.evaluation.submission`).
* ``paper`` / ``paper_split`` / ``paper_table`` / ``released``: the released OneLLM-7B's number, the split it is on,
  where in the paper it is, and the split the released evaluation script used -- the row of ``results.md``.
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
from .metrics import caption_metrics, mean_metric
from .scene import NYUV2, SUNRGBD, SceneLabels
from .submission import SubmissionFile

Predictions = Mapping[str, str]
ScoreFn = Callable[[Predictions, Sequence[Record]], dict[str, float]]
SubmitFn = Callable[[Predictions, Path, str], "SubmissionFile | None"]  # (answers, data root, split)

# Shown under results.md: where a paper split carries "*".
PAPER_SPLIT_NOTE = ("* the paper does not name this split; shown is the convention of the tables it compares with "
                    "(LLaVA-1.5 for VQAv2 / GQA, Qwen-VL for NoCaps / Flickr30K, the standard test splits otherwise).")
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
    paper_split: str = "–"  # the split the paper's number is on ("*": not named by the paper, see PAPER_SPLIT_NOTE)
    paper_table: str = ""  # where the number is in the paper ("Tab. 1")
    released: str = "none released"  # the split the released evaluation script used (spec §5)
    splits: Mapping[str, str] = field(default_factory=dict)  # name -> description; the first is the default
    remote_splits: frozenset[str] = frozenset()  # scored by a server / external grader: submission file only
    submit: SubmitFn | None = None  # the file for the server / grader; None for a split without one
    breakdown: str | None = None  # what the "<group>/<metric>" keys group by ("modality", "domain", ...)
    gen: GenerationConfig = field(default_factory=GenerationConfig)  # released scripts: 0.1 / 0.75 / 128
    template: str = "chat"
    select: Callable[[list[Record], int], list[Record]] | None = None  # --limit K; default: the first K

    @property
    def shown_metrics(self) -> tuple[str, ...]:
        return self.table_metrics or (self.primary_metric,)

    @property
    def default_split(self) -> str:
        return next(iter(self.splits), "")

    def is_remote(self, split: str) -> bool:
        return split in self.remote_splits

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
NYUV2_CLASSES = NYUV2.classes  # the 10-class protocol of Omnivore / ImageBind (onellm.evaluation.scene)
SUNRGBD_CLASSES = SUNRGBD.classes  # the 19 categories with > 80 images (Song et al., CVPR 2015)


def scene_records(root: Path, modality: str, labels: SceneLabels) -> list[Record]:
    """``annotations.json`` = ``[{"id", "rgb", "depth", "normal", "label"}]`` (paths relative to ``root``) and an
    optional ``classes.txt`` (one class a line; default: ``labels.classes``). ``modality``: "depth" | "normal"."""
    anns = load_json(root / "annotations.json", "scene annotation list")
    classes_txt = root / "classes.txt"
    classes: Sequence[str] = labels.classes
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


def scene_scorer(labels: SceneLabels) -> ScoreFn:
    """Accuracy under the one-class rule of :mod:`onellm.evaluation.scene` (synonyms and plurals of ``labels``,
    applied to the record's class list, which ``classes.txt`` may have changed)."""
    cache: dict[tuple[str, ...], SceneLabels] = {}

    def correct(prediction: str, record: Record) -> float:
        key = tuple(record.extra["classes"])
        if key not in cache:
            cache[key] = labels if key == labels.classes else labels.with_classes(key)
        return float(cache[key].verdict(prediction, record.answer))

    return accuracy_scorer(accuracy=correct)
