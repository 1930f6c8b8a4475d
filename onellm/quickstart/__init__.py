"""``onellm quickstart``: the whole OneLLM recipe in miniature, learning for real on a laptop CPU in minutes.

1. the synthetic world (train + held-out test split, all 8 modalities);
2. stand-ins for the pretrained parts: a tiny LLaMA trained on the world's text and a tiny open_clip CLIP trained
   contrastively on its image-caption pairs, assembled with ``onellm init`` (both then frozen);
3. stage I (image), stage II (video, audio, point), stage III (depth, normal, imu, fmri) and instruction tuning
   with the shipped ``train/recipes/tiny_*.yaml`` recipes, each starting from the previous output;
4. after every stage, the ``synth`` benchmark on the held-out split through the ``onellm eval`` engine:
   caption attribute accuracy per modality (and QA accuracy after instruction tuning) next to chance;
5. a table on the console and ``OUT/report.md`` with loss curves, timings and example generations.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
STAGES = [  # (name, recipe, modalities evaluated after it, chat template?)
    ("stage1", "tiny_stage1_image.yaml", ["image"], False),
    ("stage2", "tiny_stage2_video_audio_point.yaml", ["image", "video", "audio", "point"], False),
    ("stage3", "tiny_stage3_depth_normal_imu_fmri.yaml", None, False),
    ("instruction", "tiny_instruction.yaml", None, True),
]


@dataclass
class Scale:
    """How big a run is: the full quickstart or the reduced one of the integration test."""

    train_per_modality: int = 240
    test_per_modality: int = 48
    lm_steps: int = 250
    clip_steps: int = 700
    clip_scene_photos: int = 16  # 3-D scene photos per class in CLIP pretraining (0: 2-D shapes only)
    stage_steps: dict[str, int] | None = None  # None: each tiny recipe's own max_steps (the full run is the recipes)
    fmri_voxels: int = 2048
    stages: tuple[str, ...] = ("stage1", "stage2", "stage3", "instruction")
    modalities: tuple[str, ...] | None = None  # None: all eight


FULL = Scale()
# The integration test's size: image and audio only, stages I and II (about two minutes on 2 cores).
REDUCED = Scale(train_per_modality=64, test_per_modality=12, lm_steps=140, clip_steps=200, clip_scene_photos=0,
                stage_steps={"stage1": 250, "stage2": 500}, stages=("stage1", "stage2"), modalities=("image", "audio"))


def recipes_dir() -> Path:
    return ROOT / "train" / "recipes"


def default_workers() -> int:
    """Data-loading workers per stage: 0 on <= 2 CPUs, where workers take the cores the training step needs."""
    return 0 if (os.cpu_count() or 1) <= 2 else 2


class _Timer:
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


def pretrain_stand_ins(model_dir: str | Path, work: str | Path, seed: int = 0, scale: "Scale | None" = None,
                       log: Callable[[str], None] = print, timings: dict[str, float] | None = None,
                       results: dict[str, Any] | None = None) -> Path:
    """The quickstart's stand-ins for the pretrained parts, assembled into a starting model directory (what
    ``onellm init`` makes from Llama-2 and CLIP ViT-L/14 for the real recipe): a tokenizer and a tiny LLaMA trained
    on the world's text, a tiny open_clip CLIP trained contrastively on its rendered images, then ``init``.
    Intermediate files go to ``work``; ``model_dir`` is the model directory written (``onellm quickstart --only
    pretrain``). It reads no world files, so it gives the same weights as inside a full quickstart."""
    import torch

    from ..config import OneLLMConfig
    from ..data.text import load_tokenizer, train_sentencepiece
    from ..init_model import build_initial_model
    from ..processing import OneLLMProcessor
    from .pretrain import (clip_zero_shot_accuracy, pretrain_clip, pretrain_language_model, save_clip_visual,
                           tokenizer_corpus)

    scale = scale or FULL
    work, model_dir = Path(work), Path(model_dir)
    timings = {} if timings is None else timings
    results = {} if results is None else results
    timed = _Timer(timings, log)
    torch.manual_seed(seed)
    config = OneLLMConfig.preset("quickstart", **{"inputs.fmri.voxels": scale.fmri_voxels})
    with timed("pretrain language model"):
        tokenizer = load_tokenizer(train_sentencepiece(tokenizer_corpus() * 4, work / "tokenizer",
                                                       vocab_size=config.llm.vocab_size))
        config.llm.vocab_size = len(tokenizer)
        lm, lm_losses = pretrain_language_model(config, tokenizer, scale.lm_steps, seed=seed, log=log,
                                                 modalities=scale.modalities)
        lm.save_pretrained(work / "llm")
        results["lm_loss"] = [lm_losses[0], lm_losses[-1]]
    with timed("pretrain CLIP"):
        clip, clip_losses = pretrain_clip(config, scale.clip_steps, seed=seed, log=log,
                                          scene_photos=scale.clip_scene_photos)
        save_clip_visual(clip, work / "clip_visual.safetensors")
        results["clip_zero_shot_acc"] = clip_zero_shot_accuracy(clip, config)
        log(f"   CLIP zero-shot accuracy on held-out 2-D shape images: {results['clip_zero_shot_acc']:.2f}")
        if scale.clip_scene_photos:
            results["clip_zero_shot_acc_scenes"] = clip_zero_shot_accuracy(clip, config, scenes=True)
            log(f"   ... on held-out 3-D scene photos: {results['clip_zero_shot_acc_scenes']:.2f}")
    with timed("init"):
        model = build_initial_model(config, clip=work / "clip_visual.safetensors", llm=work / "llm", seed=seed)
        model.save_pretrained(model_dir, processor=OneLLMProcessor.for_config(model.config, tokenizer))
    results["curves_pretrain"] = {"language model": lm_losses, "CLIP": clip_losses}
    return model_dir


def run_quickstart(out: str | Path, seed: int = 0, scale: Scale = FULL, log: Callable[[str], None] = print,
                   num_workers: int | None = None) -> dict[str, Any]:
    """Run everything into ``out``; returns the results (also written to ``out/results.json``).

    ``num_workers`` (default :func:`default_workers`) does not change the results, only the speed."""
    from ..config import OneLLMConfig
    from ..data.synth import generate_world
    from ..evaluation.engine import run_benchmarks
    from ..training import load_recipe, train
    from .report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_workers = default_workers() if num_workers is None else num_workers
    timings: dict[str, float] = {}
    results: dict[str, Any] = {"seed": seed, "stages": {}, "timings": timings}
    timed = _Timer(timings, log)

    config = OneLLMConfig.preset("quickstart", **{"inputs.fmri.voxels": scale.fmri_voxels})
    with timed("synthetic world"):
        world = out / "world"
        shutil.rmtree(world, ignore_errors=True)
        for split, n, split_seed in (("train", scale.train_per_modality, seed), ("test", scale.test_per_modality,
                                                                                   seed + 1000)):
            generate_world(world, n, split_seed, split, modalities=scale.modalities, config=config)

    pretrain_stand_ins(out / "init", out / "pretrained", seed, scale, log, timings, results)
    previous = out / "init"
    curves: dict[str, list[float]] = results.pop("curves_pretrain")
    for name, recipe_file, eval_modalities, chat in STAGES:
        if name not in scale.stages:
            continue
        steps = (scale.stage_steps or {}).get(name) or load_recipe(recipes_dir() / recipe_file).max_steps
        overrides = [f"model={previous}", f"output_dir={out / name}", f"max_steps={steps}", f"seed={seed}",
                     f"num_workers={num_workers}", "report_to=[]", "resume=never", f"save_every={steps}",
                     "log_every=100000"]
        recipe = load_recipe(recipes_dir() / recipe_file, overrides)
        for ds in recipe.datasets:
            ds.manifest = str(world / "train" / Path(ds.manifest).name)
        with timed(f"train {name}"):
            shutil.rmtree(out / name, ignore_errors=True)
            result = train(recipe, log=lambda msg: None)
        curves[name] = result.losses
        previous = result.model_dir
        with timed(f"evaluate {name}"):
            shutil.rmtree(out / "eval" / name, ignore_errors=True)  # a rerun must not resume an old run's answers
            test = subset_requests(world / "test", eval_modalities, out / "eval" / f"{name}-data")  # seen so far
            rows = run_benchmarks(str(previous), "synth", test, out / "eval" / name, device="cpu",
                                  dtype="fp32", template="chat" if chat else "none", batch_size=32,
                                  max_new_tokens=24, temperature=0.0, num_workers=num_workers, progress=False)
        metrics = rows[0]["metrics"]
        shown = [m for m in (eval_modalities or sorted({k.split("/")[0] for k in metrics if "/" in k}))
                 if f"{m}/chance" in metrics]
        scores = {m: {k: metrics.get(f"{m}/{k}") for k in ("caption_acc", "qa_acc", "chance")} for m in shown}
        per_attribute = attribute_hits(out / "eval" / name / "synth" / "predictions.jsonl", test / "requests.jsonl")
        for m in shown:
            scores[m].update(per_attribute.get(m, {"n": 0, "attributes": {}}))
        results["stages"][name] = scores
        log(format_table(scores, f"after {name}"))
    results["curves"] = curves
    if results["stages"]:
        results["below_2x_chance"] = below_bar(results["stages"][list(results["stages"])[-1]])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, results, world / "test")
    return results


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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="output folder (report.md, models, data); with "
                                                            "--only pretrain: the model directory to write")
    p.add_argument("--only", choices=["pretrain"], default=None,
                   help="pretrain: only the stand-ins for the pretrained parts, assembled into a starting model "
                        "directory at --out (the start of the step-by-step progression in the README)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the models and the training (default 0)")
    p.add_argument("--reduced", action="store_true", help="fewer samples and steps (the integration test's size)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="data-loading workers per stage (default: 0 on <= 2 CPUs, where workers take the cores "
                        "the training step needs, else 2); the results do not depend on it")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    scale = REDUCED if args.reduced else FULL
    if args.only == "pretrain":
        import tempfile

        with tempfile.TemporaryDirectory(prefix="onellm-pretrain-") as work:
            results: dict[str, Any] = {}
            out = pretrain_stand_ins(args.out, work, args.seed, scale, results=results)
        print(f"wrote {out}: language model loss {results['lm_loss'][0]:.2f} -> {results['lm_loss'][1]:.2f}, CLIP "
              f"zero-shot {results['clip_zero_shot_acc']:.2f}; {time.perf_counter() - start:.0f} s")
        return 0
    results = run_quickstart(args.out, args.seed, scale, num_workers=args.num_workers)
    last = list(results["stages"])[-1]
    print(format_table(results["stages"][last], f"held-out accuracy after {last} (seed {args.seed})"))
    below = results.get("below_2x_chance") or []
    print("attributes under 2 x chance: " + (", ".join(below) if below else "none"))
    print(f"total {time.perf_counter() - start:.0f} s; report: {Path(args.out) / 'report.md'}")
    return 0
