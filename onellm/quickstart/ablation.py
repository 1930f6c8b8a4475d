"""``onellm quickstart --ablation``: the paper's two training ablations, in miniature, beside a finished quickstart.

(a) **Image-first initialisation.** The progression trains the image UPM in stage I, then starts video, audio and
    point from it (``init_from_image``). The ablated arm aligns image, video, audio and point together from the
    freshly initialised UPM: the stage II recipe, same data and steps, from ``init`` and without
    ``init_from_image``. Both are scored after stage II.
(b) **Joint training.** Stage III trains depth, normal, IMU and fMRI together (with replay). The ablated arm trains
    one model per new modality from the same stage II model, on that modality alone, for its share of the joint
    mix's steps (so each modality sees as many of its own samples as in the joint run). Both are scored after
    stage III on that modality.

The paper found that both help (OneLLM §5.3). What this miniature finds is computed, not assumed: the verdict per
ablation compares the mean caption hit of the attributes in the two arms.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .stages import STAGES, StageRunner, format_table

MARGIN = 5.0  # percentage points of mean attribute hits below which the two arms count as equal


def modality_shares(recipe, steps: int) -> dict[str, int]:
    """Steps of each modality's samples in a recipe's mix: ``steps`` x its share of the repeat-weighted datasets.
    The synthetic world has the same number of records per modality, so a dataset's weight is its repeat factor."""
    weights: dict[str, float] = {}
    for ds in recipe.datasets:
        if ds.weight is not None or not ds.modalities:
            raise ValueError(f"{recipe.source}: the joint-training ablation needs every dataset to name its "
                             "modalities and use 'repeat' (not 'weight')")
        for m in ds.modalities:
            weights[m] = weights.get(m, 0.0) + ds.repeat
    total = sum(weights.values())
    return {m: max(1, round(steps * w / total)) for m, w in weights.items()}


def mean_hits(scores: dict[str, dict[str, Any]], modalities: list[str]) -> float:
    """Mean over the modalities' attributes of their caption hits (%)."""
    values = [v for m in modalities for v in scores[m]["attributes"].values()]
    return sum(values) / len(values)


def verdict(main: float, ablated: float, what: str) -> str:
    if main >= ablated + MARGIN:
        return f"{what} helps here, as in the paper ({main:.1f} vs {ablated:.1f} % mean attribute hits)"
    if main <= ablated - MARGIN:
        return f"{what} hurts here, unlike the paper ({main:.1f} vs {ablated:.1f} % mean attribute hits)"
    return (f"no clear difference at this scale ({main:.1f} vs {ablated:.1f} % mean attribute hits, within "
            f"{MARGIN:.0f} points); the paper found that {what.lower()} helps")


def run_ablations(base: dict[str, Any], runner: StageRunner, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run both ablated arms beside the finished quickstart ``base`` (its results: scores and model directories);
    returns {"image_first": ..., "joint": ...}, each with per-modality scores of both arms and the verdict."""
    models, stages = base["models"], base["stages"]
    name, recipe_file, shown, _ = STAGES[1]
    random_upm = runner.run(name, recipe_file, Path(models["init"]), shown, False,
                            overrides=["init_from_image=false"], label="ablation-stage2-random-upm")
    log(format_table(random_upm.scores, "ablation (a): stage II from a random UPM"))
    image_first = {"arms": ("image-first (stage I, then init_from_image)", "all from a random UPM"),
                   "after": "stage2", "modalities": shown,
                   "scores": {m: [stages["stage2"][m], random_upm.scores[m]] for m in shown}}
    new = shown[1:]  # video, audio, point: the modalities the initialisation is about
    image_first["mean"] = [mean_hits(stages["stage2"], new), mean_hits(random_upm.scores, new)]
    image_first["verdict"] = verdict(*image_first["mean"], "Image-first initialisation")

    name, recipe_file, _, _ = STAGES[2]
    recipe = runner.recipe(recipe_file)
    added = list(recipe.init_from_image)  # depth, normal, imu, fmri: the modalities stage III brings in
    shares = modality_shares(recipe, runner.steps(name, recipe_file))
    alone: dict[str, dict[str, Any]] = {}
    for m in added:
        result = runner.run(name, recipe_file, Path(models["stage2"]), [m], False, steps=shares[m],
                            overrides=[f"datasets=[{{manifest: alignment.jsonl, modalities: [{m}]}}]",
                                       f"init_from_image=[{m}]"], label=f"ablation-stage3-{m}-alone")
        alone[m] = result.scores[m]
        log(format_table({m: alone[m]}, f"ablation (b): {m} alone, {shares[m]} steps"))
    joint = {"arms": ("joint (stage III mix)", "one model per modality"), "after": "stage3", "modalities": added,
             "steps": {m: shares[m] for m in added},
             "scores": {m: [stages["stage3"][m], alone[m]] for m in added},
             "mean": [mean_hits(stages["stage3"], added), mean_hits(alone, added)]}
    joint["verdict"] = verdict(*joint["mean"], "Joint training")
    return {"image_first": image_first, "joint": joint}


def ablation_table(ablation: dict[str, Any]) -> list[str]:
    """Markdown rows: per ablation and modality, each attribute's caption hits (%) in both arms."""
    lines = ["| ablation | modality | attribute | main arm % | ablated arm % |", "|---|---|---|---|---|"]
    for key, title in (("image_first", "(a) image-first vs random UPM"), ("joint", "(b) joint vs one per modality")):
        part = ablation[key]
        for m in part["modalities"]:
            main, other = part["scores"][m]
            for a, v in main["attributes"].items():
                lines.append(f"| {title} | {m} | {a} | {v:.0f} | {other['attributes'][a]:.0f} |")
        lines.append(f"| {title} | mean | | {part['mean'][0]:.1f} | {part['mean'][1]:.1f} |")
    return lines
