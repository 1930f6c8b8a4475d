"""Fixtures for the vLLM tests, made in the MAIN environment (open_clip, torchvision, transformers 5.23):

    .venv/bin/python tests/vllm/make_fixtures.py --out DIR [--preset tiny] [--requests 64]

writes DIR/fixtures.json plus
  DIR/world/      the synthetic world's test split (``onellm synth``): files for all eight modalities
  DIR/model/      a model directory (``onellm init``; LM head sharpened so greedy decoding has clear winners)
  DIR/requests.jsonl  the world's requests plus multi-input ones (video + audio, image + audio, point + imu)
  DIR/hf_answers.jsonl  the HF path's answers (``onellm infer --temperature 0 --dtype fp32``)
  DIR/reference.safetensors  per modality: one loaded input and its ``encode_modality`` block
  DIR/corrupt.jsonl, DIR/hf_corrupt.jsonl  a few good requests plus corrupt / missing / empty input files, and the
                HF engine's lines for them (answers and ``error`` lines)
  DIR/eval-hf/  ``onellm eval --benchmark synth --limit 2 --temperature 0`` on the world (the HF engine)
fixtures.json records, per request, its question, inputs, text prompt ids and the HF path's greedy token ids
(``onellm.generation.generate`` on the dataset and collator ``onellm infer`` uses; its decoded answers must equal
``onellm infer``'s, or the script fails).

The CPU attention of vLLM supports head sizes 32, 64, 80, ... only, so the tiny preset's LLM gets 2 heads of 32.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

# head size 32 (vLLM's CPU attention has no 16); every preset keeps its other dimensions
PRESET_OVERRIDES = {"tiny": ["llm.num_heads=2", "llm.num_kv_heads=2"], "small": [], "quickstart": []}
EXTRA_PROMPTS = ["What happens here?", "Describe what you see and hear.", "What is shown?", "Describe it."]


def _extra_records(world: Path, count: int) -> list[dict]:
    """Multi-input requests built from the world's files: video + audio first, then image + audio, point + imu."""
    rows = [json.loads(line) for line in (world / "requests.jsonl").read_text().splitlines() if line.strip()]
    by_mod: dict[str, list[dict]] = {}
    for r in rows:
        if len(r["inputs"]) == 1:
            inp = r["inputs"][0]
            if inp not in by_mod.setdefault(inp["modality"], []):
                by_mod[inp["modality"]].append(inp)
    pairs = [("video", "audio"), ("image", "audio"), ("point", "imu"), ("audio", "video")]
    out = []
    k = 0
    while len(out) < count:
        a, b = pairs[(k // 4) % len(pairs)] if k >= 4 else pairs[0]
        xa, xb = by_mod[a][k % len(by_mod[a])], by_mod[b][(k + 1) % len(by_mod[b])]
        out.append({"id": f"{a}+{b}-{k:03d}", "inputs": [xa, xb], "prompt": EXTRA_PROMPTS[k % len(EXTRA_PROMPTS)]})
        k += 1
    return out


def _absolute(inp: dict, base: Path) -> dict:
    out = dict(inp)
    for key in ("path", "rgb", "timestamps"):
        if key in out and not Path(out[key]).is_absolute():
            out[key] = str((base / out[key]).resolve())
    return out


def _processor(model_dir: Path):
    from onellm.processing import OneLLMProcessor

    return OneLLMProcessor.from_pretrained(model_dir)


def _sharpen(model_dir: Path, factor: float) -> None:
    import torch

    from onellm.model import OneLLMForConditionalGeneration

    model = OneLLMForConditionalGeneration.from_pretrained(model_dir)
    with torch.no_grad():
        model.llm.lm_head.weight.mul_(factor)
    model.save_pretrained(model_dir, processor=_processor(model_dir))


def _hf_greedy(model, processor, dataset, batch_size: int, max_new_tokens: int) -> dict[str, list[int]]:
    """The HF path's greedy token ids: the dataset, collator and ``generate`` that ``onellm infer`` uses, in
    batches of one modality key (as ``onellm infer`` groups them)."""
    import torch

    from onellm.data.collate import move_batch
    from onellm.data.datasets import Collator
    from onellm.generation import GenerationConfig, generate

    collate = Collator(processor, padding_side="left", with_labels=False)
    gen = GenerationConfig(temperature=0, max_new_tokens=max_new_tokens)
    keys = [r.modality_key for r in dataset.records]
    order = sorted(range(len(keys)), key=lambda i: (keys[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and len(groups[-1]) < batch_size and keys[groups[-1][0]] == keys[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    ids: dict[str, list[int]] = {}
    with torch.no_grad():
        for group in groups:
            batch = collate([dataset[i] for i in group])
            if batch["failed"]:
                raise SystemExit(f"HF path failed on {batch['failed']}")
            out = generate(model, processor, move_batch(batch["inputs"], "cpu", torch.float32), gen)
            ids.update({rid: [int(t) for t in x] for rid, x in zip(batch["ids"], out.token_ids)})
    return ids


def _corrupt_files(folder: Path) -> list[dict]:
    """Inputs no loader can read: bytes that are no image, a WAV header without samples, a video that is text, a
    file that does not exist."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "empty.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    (folder / "corrupt.mp4").write_text("not a video")
    return [{"id": "corrupt-image", "inputs": [{"modality": "image", "path": str(folder / "corrupt.png")}]},
            {"id": "corrupt-audio", "inputs": [{"modality": "audio", "path": str(folder / "empty.wav")}],
             "prompt": "What is this?"},
            {"id": "corrupt-video+audio", "inputs": [{"modality": "video", "path": str(folder / "corrupt.mp4")},
                                                     {"modality": "audio", "path": str(folder / "empty.wav")}]},
            {"id": "missing-image", "inputs": [{"modality": "image", "path": str(folder / "nowhere.png")}]}]


def _corrupt_and_eval(cli, out: Path, world: Path, model_dir: Path, manifest: Path, args) -> dict:
    """The HF engine on a manifest with corrupt inputs between good ones, and ``onellm eval`` on the world."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    bad = _corrupt_files(out / "corrupt")
    mixed = rows[:3] + bad[:2] + rows[3:6] + bad[2:] + rows[-1:]  # the text-only request last
    corrupt = out / "corrupt.jsonl"
    corrupt.write_text("".join(json.dumps(r) + "\n" for r in mixed))
    hf_corrupt = out / "hf_corrupt.jsonl"
    hf_corrupt.unlink(missing_ok=True)
    common = ["--temperature", "0", "--max-new-tokens", str(args.max_new_tokens), "--num-workers", "0",
              "--device", "cpu", "--dtype", "fp32"]
    if cli(["infer", "--model", str(model_dir), "--input", str(corrupt), "--output", str(hf_corrupt),
            "--batch-size", str(args.batch_size), *common]) != 0:
        raise SystemExit("onellm infer on the corrupt manifest failed")
    eval_out = out / "eval-hf"
    if cli(["eval", "--model", str(model_dir), "--benchmark", "synth", "--data", str(world), "--output",
            str(eval_out), "--limit", "2", *common]) != 0:
        raise SystemExit("onellm eval failed")
    return {"corrupt_manifest": str(corrupt), "hf_corrupt": str(hf_corrupt), "eval_hf": str(eval_out),
            "corrupt_ids": [r["id"] for r in bad]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--requests", type=int, default=64,
                   help="requests with inputs (the world's, then multi-input ones); one text-only request is added")
    p.add_argument("--per-modality", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sharpen", type=float, default=4.0)
    p.add_argument("--no-reference-ids", action="store_true", help="skip the HF run (benchmark fixtures)")
    args = p.parse_args(argv)

    import torch
    from safetensors.torch import save_file

    from onellm.cli import main as cli
    from onellm.data.datasets import RequestDataset, default_prompt
    from onellm.data.loaders import load_modality
    from onellm.data.manifest import read_manifest

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    world_root, model_dir = out / "world", out / "model"
    t0 = time.perf_counter()
    if cli(["synth", "--out", str(world_root), "--per-modality", str(args.per_modality), "--preset", args.preset,
            "--split", "test", "--seed", "3"]) != 0:
        raise SystemExit("onellm synth failed")
    world = world_root / "test"
    overrides = PRESET_OVERRIDES.get(args.preset, [])
    init = ["init", "--preset", args.preset, "--out", str(model_dir), "--seed", "1"]
    if cli(init + (["--set", *overrides] if overrides else [])) != 0:
        raise SystemExit("onellm init failed")
    if args.sharpen != 1:
        _sharpen(model_dir, args.sharpen)

    rows = [json.loads(line) for line in (world / "requests.jsonl").read_text().splitlines() if line.strip()]
    if len(rows) > args.requests:  # keep every modality: take the world's requests round-robin over modalities
        groups: dict[str, list[dict]] = {}
        for r in rows:
            groups.setdefault(r["inputs"][0]["modality"], []).append(r)
        mixed = [g[i] for i in range(max(map(len, groups.values()))) for g in groups.values() if i < len(g)]
        rows = sorted(mixed[: args.requests], key=rows.index)
    rows += _extra_records(world, args.requests - len(rows))
    rows.append({"id": "text-only", "inputs": [], "prompt": "What is a red circle?"})  # no modality at all
    for r in rows:
        r["inputs"] = [_absolute(i, world) for i in r["inputs"]]
    manifest = out / "requests.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    from onellm.model import OneLLMForConditionalGeneration

    model = OneLLMForConditionalGeneration.from_pretrained(model_dir)
    processor = _processor(model_dir)
    records = read_manifest(manifest)
    dataset = RequestDataset(records, processor)
    entries = []
    for rec in records:
        question = default_prompt(rec)
        history = [tuple(t) for t in rec.extra.get("history", [])]
        sources = [(str(getattr(i.modality, "value", i.modality)), i.as_source()) for i in rec.inputs]
        sample = processor.prompt_sample(question, sources, history=history)  # the HF path's input_ids
        entries.append({"id": rec.id, "question": question, "inputs": [s for _, s in sources],
                        "modalities": [m for m, _ in sources],
                        "text_ids": [int(t) for t in processor.prompt_ids(question, history)],
                        "hf_input_ids": [int(t) for t in sample.input_ids]})

    # per modality: one input loaded here and its block (checks the vLLM environment's loaders and encoder)
    tensors = {}
    with torch.no_grad():
        for e in entries:
            for src in e["inputs"]:
                m = src["modality"]
                if f"{m}.input" in tensors:
                    continue
                x = load_modality(m, src, train=False, config=model.config)
                tensors[f"{m}.input"] = x.contiguous()
                tensors[f"{m}.block"] = model.encode_modality(m, x[None])[0].contiguous()
                tensors[f"{m}.source"] = torch.tensor(list(json.dumps(src).encode()), dtype=torch.uint8)
    save_file(tensors, str(out / "reference.safetensors"))

    if not args.no_reference_ids:
        hf_ids = _hf_greedy(model, processor, dataset, args.batch_size, args.max_new_tokens)
        answers = out / "hf_answers.jsonl"
        answers.unlink(missing_ok=True)
        if cli(["infer", "--model", str(model_dir), "--input", str(manifest), "--output", str(answers),
                "--temperature", "0", "--max-new-tokens", str(args.max_new_tokens), "--batch-size",
                str(args.batch_size), "--num-workers", "0", "--device", "cpu", "--dtype", "fp32"]) != 0:
            raise SystemExit("onellm infer failed")
        hf_answers = {r["id"]: r for r in map(json.loads, answers.read_text().splitlines())}
        for e in entries:
            e["hf_token_ids"] = hf_ids[e["id"]]
            e["hf_answer"] = hf_answers[e["id"]].get("answer")
            decoded = processor.answer(e["hf_token_ids"])
            if decoded != e["hf_answer"]:  # the loop above is the CLI's path: same answers
                raise SystemExit(f"{e['id']}: onellm infer answered {e['hf_answer']!r}, the generate loop "
                                 f"{decoded!r}")
    extra = {}
    if not args.no_reference_ids:
        extra = _corrupt_and_eval(cli, out, world, model_dir, manifest, args)
    fixtures = {**extra, "model_dir": str(model_dir), "world": str(world), "manifest": str(manifest),
                "reference": str(out / "reference.safetensors"), "preset": args.preset,
                "max_new_tokens": args.max_new_tokens, "requests": entries,
                "seconds": round(time.perf_counter() - t0, 1)}
    (out / "fixtures.json").write_text(json.dumps(fixtures, indent=1))
    print(f"fixtures: {len(entries)} requests in {out} ({fixtures['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
