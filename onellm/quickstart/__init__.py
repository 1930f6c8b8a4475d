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
import copy
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .stages import (STAGES, StageRunner, Timer, attribute_hits, below_bar, format_table, recipes_dir,
                     subset_requests)

__all__ = ["FULL", "REDUCED", "STAGES", "Scale", "attribute_hits", "below_bar", "cache_clip_features", "format_table",
           "pretrain_stand_ins", "recipes_dir", "run_quickstart", "subset_requests"]


@dataclass
class Scale:
    """How big a run is: the full quickstart or the reduced one of the integration test."""

    train_per_modality: int = 240
    test_per_modality: int = 48
    lm_steps: int = 1000
    clip_steps: int = 700
    clip_scene_photos: int = 16  # 3-D scene photos per class in CLIP pretraining (0: 2-D shapes only)
    stage_steps: dict[str, int] | None = None  # None: each tiny recipe's own max_steps (the full run is the recipes)
    fmri_voxels: int = 2048
    stages: tuple[str, ...] = ("stage1", "stage2", "stage3", "instruction")
    modalities: tuple[str, ...] | None = None  # None: all eight


FULL = Scale()
# The integration test's size: image, video and point, stages I and II (under three minutes on 2 cores). The stand-in
# LM needs its 500 steps here to read its context (140 steps of the corpus before this one left point shape and video
# motion at chance). Measured (seed 0, chance 25 %): point shape 62 %, video motion 42 %; 800 stage II steps gave
# 100 % and 38 % and took 189 s instead of 142.
REDUCED = Scale(train_per_modality=64, test_per_modality=24, lm_steps=500, clip_steps=200, clip_scene_photos=0,
                stage_steps={"stage1": 250, "stage2": 600}, stages=("stage1", "stage2"),
                modalities=("image", "video", "point"))


def default_workers() -> int:
    """Data-loading workers per stage: 0 on <= 2 CPUs, where workers take the cores the training step needs."""
    return 0 if (os.cpu_count() or 1) <= 2 else 2


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
    from .pretrain import pretrain_language_model, stand_in_clip, tokenizer_corpus

    scale = scale or FULL
    work, model_dir = Path(work), Path(model_dir)
    work.mkdir(parents=True, exist_ok=True)
    timings = {} if timings is None else timings
    results = {} if results is None else results
    timed = Timer(timings, log)
    torch.manual_seed(seed)
    config = OneLLMConfig.preset("quickstart", **{"inputs.fmri.voxels": scale.fmri_voxels})
    clip_args = (config, scale.clip_steps, seed, scale.clip_scene_photos, work / "clip_visual.safetensors")
    # The two stand-ins do not depend on each other: with 2+ threads, CLIP trains in a child process on half of
    # them while this one trains the LM. Two threads make these tiny models' steps only 1.2-1.4x faster than one
    # (measured on 2 cores), so side by side they finish sooner than one after the other.
    threads = torch.get_num_threads()
    pool = None
    if threads >= 2:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        with timed("pretrain language model and CLIP" + (" (in parallel)" if pool else "")):
            clip_job = pool.submit(stand_in_clip, *clip_args, threads=threads // 2) if pool else None
            torch.set_num_threads(threads - threads // 2)
            lm_start = time.perf_counter()
            tokenizer = load_tokenizer(train_sentencepiece(tokenizer_corpus() * 4, work / "tokenizer",
                                                           vocab_size=config.llm.vocab_size))
            lm_config = copy.deepcopy(config)  # the child may still be reading `config`
            lm_config.llm.vocab_size = len(tokenizer)
            lm, lm_losses = pretrain_language_model(lm_config, tokenizer, scale.lm_steps, seed=seed, log=log,
                                                     modalities=scale.modalities)
            lm.save_pretrained(work / "llm")
            results["lm_loss"] = [lm_losses[0], lm_losses[-1]]
            results["pretrain_seconds"] = {"language model": round(time.perf_counter() - lm_start, 1)}
            clip = clip_job.result() if clip_job else stand_in_clip(*clip_args)
            results["pretrain_seconds"]["CLIP"] = clip["seconds"]
    finally:
        torch.set_num_threads(threads)
        if pool:
            pool.shutdown()
    for line in clip["log"]:
        log(line)
    results["clip_zero_shot_acc"] = clip["zero_shot"]
    log(f"   CLIP zero-shot accuracy on held-out 2-D shape images: {results['clip_zero_shot_acc']:.2f}")
    if "zero_shot_scenes" in clip:
        results["clip_zero_shot_acc_scenes"] = clip["zero_shot_scenes"]
        log(f"   ... on held-out 3-D scene photos: {results['clip_zero_shot_acc_scenes']:.2f}")
    with timed("init"):
        model = build_initial_model(lm_config, clip=work / "clip_visual.safetensors", llm=work / "llm", seed=seed)
        model.save_pretrained(model_dir, processor=OneLLMProcessor.for_config(model.config, tokenizer))
    results["curves_pretrain"] = {"language model": lm_losses, "CLIP": clip["losses"]}
    return model_dir


def cache_clip_features(model_dir: Path, train_dir: Path, out: Path, num_workers: int) -> Path | None:
    """CLIP features of the training inputs that reach the UPM through the frozen CLIP alone and whose training load
    draws no augmentation (of the eight modalities: video), encoded once (``onellm cache-features``) and read by
    every stage instead of running CLIP on, for a video, 15 frames each step (such a step cost three audio steps).
    Exact: CLIP stays frozen in every tiny recipe. Images, depth and normal maps are randomly cropped in training,
    so they keep running CLIP. None when the world has no such inputs."""
    from ..data.manifest import read_manifest
    from ..features import cache_features, cacheable
    from ..model import OneLLM
    from ..modalities import get as modality_definition, names

    exact = {m for m in names() if cacheable(m) and not modality_definition(m).loader.augments}
    records = [r for r in read_manifest(train_dir / "alignment.jsonl") if any(i.modality in exact for i in r.inputs)]
    if not records:
        return None  # without loading the model
    shutil.rmtree(out, ignore_errors=True)
    model = OneLLM.from_pretrained(model_dir)
    counts = cache_features(model, records, out, num_workers=num_workers, progress=False, modalities=exact)
    if counts["failed"]:
        raise RuntimeError(f"{out}: {counts['failed']} training inputs could not be encoded")
    return out


def run_quickstart(out: str | Path, seed: int = 0, scale: Scale = FULL, log: Callable[[str], None] = print,
                   num_workers: int | None = None) -> dict[str, Any]:
    """Run everything into ``out``; returns the results (also written to ``out/results.json``).

    ``num_workers`` (default :func:`default_workers`) does not change the results, only the speed."""
    from ..config import OneLLMConfig
    from ..data.synth import generate_world
    from .report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    num_workers = default_workers() if num_workers is None else num_workers
    timings: dict[str, float] = {}
    results: dict[str, Any] = {"seed": seed, "stages": {}, "timings": timings}
    timed = Timer(timings, log)

    config = OneLLMConfig.preset("quickstart", **{"inputs.fmri.voxels": scale.fmri_voxels})
    with timed("synthetic world"):
        world = out / "world"
        shutil.rmtree(world, ignore_errors=True)
        for split, n, split_seed in (("train", scale.train_per_modality, seed), ("test", scale.test_per_modality,
                                                                                   seed + 1000)):
            generate_world(world, n, split_seed, split, modalities=scale.modalities, config=config)

    pretrain_stand_ins(out / "init", out / "pretrained", seed, scale, log, timings, results)
    with timed("cache CLIP features"):
        features = cache_clip_features(out / "init", world / "train", out / "features", num_workers)
    runner = StageRunner(out, seed, num_workers, timed, scale.stage_steps, features)
    previous = out / "init"
    curves: dict[str, list[float]] = results.pop("curves_pretrain")
    results["models"] = {"init": str(previous)}
    for name, recipe_file, eval_modalities, chat in STAGES:
        if name not in scale.stages:
            continue
        stage = runner.run(name, recipe_file, previous, eval_modalities, chat)
        curves[name], previous = stage.losses, stage.model_dir
        results["models"][name] = str(previous)
        results["stages"][name] = stage.scores
        log(format_table(stage.scores, f"after {name}"))
    results["curves"] = curves
    if results["stages"]:
        results["below_2x_chance"] = below_bar(results["stages"][list(results["stages"])[-1]])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, results, world / "test")
    return results


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="output folder (report.md, models, data); with "
                                                            "--only pretrain: the model directory to write")
    p.add_argument("--only", choices=["pretrain"], default=None,
                   help="pretrain: only the stand-ins for the pretrained parts, assembled into a starting model "
                        "directory at --out (the start of the step-by-step progression in the README)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the models and the training (default 0)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                   help="run the quickstart once per seed into OUT/seed-N (a finished full run of that seed already "
                        "there is reused) and write OUT/seeds.md: the per-attribute table and the time per stage of "
                        "every seed side by side")
    p.add_argument("--reduced", action="store_true", help="fewer samples and steps (the integration test's size)")
    p.add_argument("--ablation", action="store_true",
                   help="also run the paper's two ablations in miniature (image-first initialisation vs a random "
                        "UPM; joint vs one model per modality), reusing a finished quickstart in --out of the same "
                        "seed (else running it first); adds a table to OUT/report.md (about 10 more minutes)")
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
    if args.ablation:
        if args.reduced or args.seeds:
            raise SystemExit("onellm quickstart: --ablation runs beside the full quickstart of one --seed; drop "
                             "--reduced / --seeds")
        return run_with_ablation(Path(args.out), args.seed, args.num_workers, start)
    if args.seeds:
        from .report import write_seeds_report

        runs = {}
        for seed in args.seeds:
            seed_out = Path(args.out) / f"seed-{seed}"
            runs[seed] = finished_run(seed_out, seed) if scale is FULL else None
            if runs[seed] is not None:
                print(f"reusing the finished seed-{seed} quickstart in {seed_out}")
            else:
                runs[seed] = run_quickstart(seed_out, seed, scale, num_workers=args.num_workers)
        path = write_seeds_report(Path(args.out), runs)
        below = {seed: r.get("below_2x_chance") or [] for seed, r in runs.items()}
        for seed, items in below.items():
            print(f"seed {seed}: attributes under 2 x chance: " + (", ".join(items) if items else "none"))
        print(f"total {time.perf_counter() - start:.0f} s; report: {path}")
        return 0
    results = run_quickstart(args.out, args.seed, scale, num_workers=args.num_workers)
    last = list(results["stages"])[-1]
    print(format_table(results["stages"][last], f"held-out accuracy after {last} (seed {args.seed})"))
    below = results.get("below_2x_chance") or []
    print("attributes under 2 x chance: " + (", ".join(below) if below else "none"))
    print(f"total {time.perf_counter() - start:.0f} s; report: {Path(args.out) / 'report.md'}")
    return 0


def finished_run(out: Path, seed: int) -> dict[str, Any] | None:
    """The results of a complete full quickstart of ``seed`` in ``out`` whose models are all still there, else None."""
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    complete = results.get("seed") == seed and list(results.get("stages", {})) == [s[0] for s in STAGES]
    models = results.get("models", {})
    if not complete or not all(Path(models.get(k, "")).joinpath("config.json").is_file() for k in ("init", "stage2")):
        return None
    return results


def run_with_ablation(out: Path, seed: int, num_workers: int | None, start: float) -> int:
    """``--ablation``: the quickstart (reused when already finished in ``out``), then both ablations."""
    from .ablation import run_ablations
    from .report import write_report

    results = finished_run(out, seed)
    if results is None:
        results = run_quickstart(out, seed, FULL, num_workers=num_workers)
    else:
        print(f"reusing the finished seed-{seed} quickstart in {out}")
    timings: dict[str, float] = {}
    features = out / "features"
    runner = StageRunner(out, seed, default_workers() if num_workers is None else num_workers,
                         Timer(timings, print), FULL.stage_steps,
                         features if (features / "index.json").is_file() else None)
    results["ablation"] = run_ablations(results, runner)
    results["ablation_timings"] = timings
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, results, out / "world" / "test")
    for key in ("image_first", "joint"):
        print(f"ablation {key}: {results['ablation'][key]['verdict']}")
    print(f"total {time.perf_counter() - start:.0f} s; report: {out / 'report.md'}")
    return 0
