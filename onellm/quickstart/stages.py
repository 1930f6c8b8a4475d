"""One quickstart stage: train a shipped tiny recipe from the previous model, then score it on the held-out split.

Shared by the quickstart's progression and its ablations, so that both train and score the same way.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[2]
STAGES = [  # (name, recipe, modalities evaluated after it (None: all seen so far), chat template?)
    ("stage1", "tiny_stage1_image.yaml", ["image"], False),
    ("stage2", "tiny_stage2_video_audio_point.yaml", ["image", "video", "audio", "point"], False),
    ("stage3", "tiny_stage3_depth_normal_imu_fmri.yaml", None, False),
    ("instruction", "tiny_instruction.yaml", None, True),
]


def recipes_dir() -> Path:
    return ROOT / "train" / "recipes"


class Timer:
    """``with timer("name"):`` logs the step and records its seconds in ``timings``."""

    def __init__(self, timings: dict[str, float], log: Callable[[str], None]):
        self.timings, self.log = timings, log

    def __call__(self, name: str):
        timer = self

        class _Step:
            def __enter__(self):
                self.t = time.perf_counter()
                timer.log(f"== {name}")

            def __exit__(self, *exc):
                timer.timings[name] = round(time.perf_counter() - self.t, 1)
                timer.log(f"   {name}: {timer.timings[name]:.1f} s")
        return _Step()


@dataclass
class StageResult:
    model_dir: Path
    scores: dict[str, dict[str, Any]]  # modality -> caption_acc / qa_acc / chance (%), n, attributes (% each)
    losses: list[float]


@dataclass
class StageRunner:
    """Trains and scores stages of one quickstart run rooted at ``out`` (world in ``out/world``)."""

    out: Path
    seed: int
    num_workers: int
    timed: Timer
    stage_steps: dict[str, int] | None = None  # per stage name: max_steps instead of the recipe's
    feature_cache: Path | None = None  # CLIP features of the world's videos (every stage keeps CLIP frozen)

    @property
    def world(self) -> Path:
        return self.out / "world"

    def recipe(self, recipe_file: str, overrides: Sequence[str] = ()):
        from ..training import load_recipe

        return load_recipe(recipes_dir() / recipe_file, list(overrides))

    def steps(self, name: str, recipe_file: str) -> int:
        return (self.stage_steps or {}).get(name) or self.recipe(recipe_file).max_steps

    def run(self, name: str, recipe_file: str, previous: Path, eval_modalities: list[str] | None, chat: bool,
            steps: int | None = None, overrides: Sequence[str] = (), label: str | None = None) -> StageResult:
        """Train ``recipe_file`` from ``previous`` into ``out/label`` (default ``name``), then run the ``synth``
        benchmark on ``eval_modalities`` (None: every modality the model has) of the held-out split."""
        from ..evaluation.engine import run_benchmarks
        from ..training import train

        label = label or name
        steps = steps or self.steps(name, recipe_file)
        recipe = self.recipe(recipe_file, [f"model={previous}", f"output_dir={self.out / label}", f"max_steps={steps}",
                                           f"seed={self.seed}", f"num_workers={self.num_workers}", "report_to=[]",
                                           "resume=never", f"save_every={steps}", "log_every=100000",
                                           *([f"feature_cache={self.feature_cache}"] if self.feature_cache else []),
                                           *overrides])
        for ds in recipe.datasets:
            ds.manifest = str(self.world / "train" / Path(ds.manifest).name)
        with self.timed(f"train {label}"):
            shutil.rmtree(self.out / label, ignore_errors=True)
            result = train(recipe, log=lambda msg: None)
        with self.timed(f"evaluate {label}"):
            eval_dir = self.out / "eval" / label
            shutil.rmtree(eval_dir, ignore_errors=True)  # a rerun must not resume an old run's answers
            test = subset_requests(self.world / "test", eval_modalities, self.out / "eval" / f"{label}-data")
            rows = run_benchmarks(str(result.model_dir), "synth", test, eval_dir, device="cpu", dtype="fp32",
                                  template="chat" if chat else "none", batch_size=32, max_new_tokens=24,
                                  temperature=0.0, num_workers=self.num_workers, progress=False)
        metrics = rows[0]["metrics"]
        shown = [m for m in (eval_modalities or sorted({k.split("/")[0] for k in metrics if "/" in k}))
                 if f"{m}/chance" in metrics]
        scores = {m: {k: metrics.get(f"{m}/{k}") for k in ("caption_acc", "qa_acc", "chance")} for m in shown}
        per_attribute = attribute_hits(eval_dir / "synth" / "predictions.jsonl", test / "requests.jsonl")
        for m in shown:
            scores[m].update(per_attribute.get(m, {"n": 0, "attributes": {}}))
        return StageResult(result.model_dir, scores, result.losses)


def attribute_hits(predictions: Path, requests: Path) -> dict[str, dict[str, Any]]:
    """Per modality, the share of generated captions that name each attribute's true value and no other value of
    it -> {modality: {"n": captions, "attributes": {attribute: percent}}}."""
    from ..data.synth.world import attributes, names_value

    truth = {}
    for line in requests.read_text().splitlines():
        r = json.loads(line)
        if r.get("task") == "caption":
            truth[r["id"]] = (r["inputs"][0]["modality"], r["attributes"])
    hits: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for line in predictions.read_text().splitlines():
        row = json.loads(line)
        if row.get("id") not in truth or "answer" not in row:
            continue
        modality, attrs = truth[row["id"]]
        counts[modality] = counts.get(modality, 0) + 1
        vocab = attributes(modality)
        for name, value in attrs.items():
            named = [v for v in vocab[name] if names_value(row["answer"], v)]
            hits.setdefault(modality, dict.fromkeys(vocab, 0))[name] += named == [value]
    return {m: {"n": counts[m], "attributes": {a: 100 * h / counts[m] for a, h in hits[m].items()}} for m in hits}


def below_bar(scores: dict[str, dict[str, Any]], factor: float = 2.0) -> list[str]:
    """The attributes whose held-out caption hits are under ``factor`` x their chance (100 / number of values; for a
    two-valued attribute 2 x chance is 100 %)."""
    from ..data.synth.world import attributes

    return [f"{m}.{a} {v:.0f} % < {factor * 100 / len(attributes(m)[a]):.0f} %" for m, r in scores.items()
            for a, v in r.get("attributes", {}).items() if v < factor * 100 / len(attributes(m)[a]) - 1e-9]


def subset_requests(test_dir: Path, modalities: list[str] | None, dest: Path) -> Path:
    """A requests.jsonl with only ``modalities`` (all when None), paths made absolute so it can live in ``dest``."""
    from ..data.manifest import read_manifest, write_jsonl

    rows = []
    for r in read_manifest(test_dir / "requests.jsonl"):
        if modalities is not None and r.modality_key not in modalities:
            continue
        rows.append({"id": r.id, "inputs": [i.as_source() for i in r.inputs], "prompt": r.prompt,
                     "answer": r.answer, **r.extra})
    write_jsonl(dest / "requests.jsonl", rows)
    return dest


def format_table(rows: dict[str, dict[str, Any]], title: str) -> str:
    """The console table: accuracies in % (the unit of ``onellm eval``), then each attribute's caption hits in %."""
    def f(v):
        return "    –" if v is None else f"{v:5.1f}"

    lines = [title, f"{'modality':9s} {'caption %':>9s} {'QA %':>6s} {'chance %':>8s}  per attribute (caption %)"]
    for m, r in rows.items():
        attrs = "  ".join(f"{a} {v:.0f}" for a, v in r.get("attributes", {}).items())
        lines.append(f"{m:9s} {f(r['caption_acc']):>9s} {f(r['qa_acc']):>6s} {f(r['chance']):>8s}  {attrs}")
    return "\n".join(lines)
