"""``report.md`` of a quickstart run: accuracy tables per stage, loss curves (PNG), timings, example generations."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _plot(curves: dict[str, list[float]], path: Path) -> None:
    """One panel per curve (the LM and CLIP pretraining, then each stage), drawn by the code of ``onellm plot``."""
    from ..plot import draw

    panels = {name: {name: ([float(k) for k in range(1, len(values) + 1)], [float(v) for v in values])}
              for name, values in curves.items()}
    draw(panels, path, ylabels={name: "loss" for name in curves}, ncols=min(3, len(panels)) or 1)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def _table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Accuracies in % (the unit of ``onellm eval``); per attribute: the captions naming its true value, in %."""
    lines = ["| modality | caption accuracy % | QA accuracy % | chance % | per attribute (caption %, of n) |",
             "|---|---|---|---|---|"]
    for m, r in rows.items():
        attrs = ", ".join(f"{a} {v:.0f}" for a, v in r.get("attributes", {}).items())
        n = f" (n = {r['n']})" if r.get("n") else ""
        lines.append(f"| {m} | {_pct(r['caption_acc'])} | {_pct(r['qa_acc'])} | {_pct(r['chance'])} | {attrs}{n} |")
    return lines


def _examples(predictions: Path, requests: Path, per_modality: int = 2) -> list[str]:
    if not predictions.exists():
        return []
    prompts = {}
    if requests.exists():  # predictions hold only id / answer / gt: the prompt comes from the request manifest
        prompts = {r["id"]: r.get("prompt", "") for r in map(json.loads, requests.read_text().splitlines())}
    seen: dict[str, int] = {}
    lines = ["| id | prompt | generated | reference |", "|---|---|---|---|"]
    for raw in predictions.read_text().splitlines():
        row = json.loads(raw)
        modality = row["id"].split("-")[0]
        if seen.get(modality, 0) >= per_modality or "answer" not in row:
            continue
        seen[modality] = seen.get(modality, 0) + 1
        lines.append(f"| {row['id']} | {prompts.get(row['id'], '')} | {row['answer']} | {row.get('gt', '')} |")
    return lines


def write_report(out: Path, results: dict[str, Any], test_dir: Path) -> Path:
    _plot(results["curves"], out / "loss_curves.png")
    stages = list(results["stages"])
    md = ["# OneLLM quickstart report", "",
          f"Seed {results['seed']}. Held-out split: `{test_dir}`. All accuracies in % (as `onellm eval` reports "
          "them). Caption accuracy = the share of a sample's true attributes its generated caption names (naming "
          "another value of the same attribute cancels the hit); per attribute: the share of captions naming that "
          "attribute's true value; QA accuracy = the true value named in the answer; chance = one uniformly "
          "random value per attribute (per attribute: 100 / its number of values).", ""]
    if stages:
        md += [f"## After {stages[-1]}", ""] + _table(results["stages"][stages[-1]]) + [""]
        below = results.get("below_2x_chance")
        if below is not None:
            md += ["Attributes under 2 x chance: " + (", ".join(below) if below else "none") + ".", ""]
    md += ["## What each stage added", ""]
    for name in stages:
        md += [f"### {name}", ""] + _table(results["stages"][name]) + [""]
    if "ablation" in results:
        from .ablation import ablation_table

        ab = results["ablation"]
        md += ["## Ablations (the paper's two, in miniature)", "",
               "(a) stage II after stage I with `init_from_image` (main) vs the same stage II from the initial, "
               "random UPM; (b) stage III on the joint mix (main) vs one model per new modality trained alone from "
               "stage II for its share of the joint steps (" + ", ".join(f"{m} {n}" for m, n in
                                                                          ab["joint"]["steps"].items()) + "). "
               "Caption hits per attribute on the held-out split, %.", ""] + ablation_table(ab) + [""]
        md += [f"- (a) {ab['image_first']['verdict']}.", f"- (b) {ab['joint']['verdict']}.", ""]
        timings = results.get("ablation_timings", {})
        if timings:
            md += [f"Ablation run time: {sum(timings.values()):.0f} s.", ""]
    md += ["## Pretrained stand-ins", "",
           f"- language model loss {results['lm_loss'][0]:.2f} -> {results['lm_loss'][1]:.2f}",
           f"- CLIP zero-shot accuracy on held-out 2-D shape images: {results['clip_zero_shot_acc']:.2f}"]
    if "clip_zero_shot_acc_scenes" in results:
        md += [f"- CLIP zero-shot accuracy on held-out 3-D scene photos: {results['clip_zero_shot_acc_scenes']:.2f}"]
    md += ["", "## Loss curves", "", "![loss curves](loss_curves.png)", "", "## Timings", "",
           "| step | seconds |", "|---|---|"]
    md += [f"| {k} | {v:.1f} |" for k, v in results["timings"].items()]
    md += [f"| total | {sum(results['timings'].values()):.1f} |", ""]
    if stages:
        md += ["## Example generations (last stage)", ""]
        md += _examples(out / "eval" / stages[-1] / "synth" / "predictions.jsonl",
                        out / "eval" / f"{stages[-1]}-data" / "requests.jsonl") + [""]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def write_seeds_report(out: Path, runs: dict[int, dict[str, Any]]) -> Path:
    """``OUT/seeds.md`` of ``onellm quickstart --seeds``: each attribute's held-out caption hits after the last stage
    and each stage's time, one column per seed (each seed's own report is in ``OUT/seed-N/report.md``)."""
    from ..data.synth.world import attributes

    seeds = list(runs)
    last = {seed: r["stages"][list(r["stages"])[-1]] for seed, r in runs.items()}
    head = "| " + " | ".join(f"seed {seed}" for seed in seeds) + " |"
    md = ["# OneLLM quickstart, several seeds", "",
          "Caption hits per attribute on the held-out split after the last stage, % (a caption hits when it names "
          "the true value and no other value of the attribute). Bar: 2 x chance.", "",
          "| modality | attribute | chance | bar " + head, "|---|---|---|---|" + "---|" * len(seeds)]
    first = last[seeds[0]]
    for m in first:
        for a in first[m].get("attributes", {}):
            chance = 100 / len(attributes(m)[a])
            cells = " | ".join(f"{last[seed][m]['attributes'][a]:.0f}" for seed in seeds)
            md.append(f"| {m} | {a} | {chance:.0f} | {2 * chance:.0f} | {cells} |")
    md += ["", "Attributes under the bar: " + "; ".join(
        f"seed {seed}: " + (", ".join(r.get("below_2x_chance") or []) or "none") for seed, r in runs.items()), "",
        "## Time per step (s)", "", "| step " + head, "|---|" + "---|" * len(seeds)]
    for step in runs[seeds[0]]["timings"]:
        md.append(f"| {step} | " + " | ".join(f"{runs[seed]['timings'].get(step, 0):.0f}" for seed in seeds) + " |")
    md.append("| total | " + " | ".join(f"{sum(runs[seed]['timings'].values()):.0f}" for seed in seeds) + " |")
    path = out / "seeds.md"
    path.write_text("\n".join(md) + "\n")
    return path
