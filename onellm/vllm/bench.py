"""vLLM vs HF generate on the same requests (``.ci/vllm-bench.sh`` runs both and the comparison in one go).

    <main env>  python -m onellm.vllm.bench hf   --model DIR --manifest M --out hf.json   [--batch-size 16]
    <vLLM env>  python -m onellm.vllm.bench vllm --model DIR --manifest M --out vllm.json [--multiprocessing]
    <any>       python -m onellm.vllm.bench compare hf.json vllm.json [...]

Both sides answer every request of the manifest greedily (temperature 0), ``--max-new-tokens`` each, fp32 on the
CPU, and time the whole batch job from the first input load to the last answer, model loading excluded: the HF
side is ``onellm.inference.run_inference`` (what ``onellm infer`` runs: DataLoader, modality-grouped left-padded
batches, HF ``generate``), the vLLM side is one ``LLM.generate`` over all requests (inputs loaded by the
multimodal processor, continuous batching). Reported: requests/s, generated tokens/s, and how many answers equal
the HF side's. This module imports vLLM only in the ``vllm`` and ``infer`` commands.

The "inference engines" section of ``onellm bench`` is :func:`inference_engines`: it builds the workload (the
synthetic world's requests, round-robin over every modality, plus one text-only request; a model directory of the
preset with random weights, LM head sharpened so greedy answers have clear winners), then answers the same
requests with ``run_inference(engine="hf")`` here and ``run_inference(engine="vllm")`` -- what ``onellm infer``
and ``onellm infer --engine vllm`` run, with their defaults -- in the vLLM environment (this interpreter when it
has vLLM, else ``--vllm-python`` / ``$ONELLM_VLLM_PYTHON`` / the repository's ``.venv-vllm``), and reports both
samples/s and their ratio. Model loading and engine start are excluded; DataLoader start, input loading,
generation and writing are included on both sides. ``python -m onellm.vllm.bench engines`` runs the section
alone (``.ci/vllm-bench.sh``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _records(manifest: Path):
    from onellm.data.manifest import read_manifest

    return read_manifest(manifest)


def run_hf(args) -> dict:
    import torch

    import onellm.inference as inference
    from onellm.generation import GenerationConfig

    torch.manual_seed(0)
    model = inference.load_for_inference(args.model, device="cpu", dtype="fp32")
    records = _records(args.manifest)
    tokens = []
    original = inference.generate

    def count(*a, **kw):  # the generated tokens of every batch
        result = original(*a, **kw)
        tokens.append(sum(len(x) for x in result.token_ids))
        return result

    inference.generate = count
    out = Path(args.out).with_suffix(".answers.jsonl")
    out.unlink(missing_ok=True)
    try:
        t0 = time.perf_counter()
        summary = inference.run_inference(model, records, out, batch_size=args.batch_size, num_workers=args.workers,
                                          gen=GenerationConfig(temperature=0, max_new_tokens=args.max_new_tokens),
                                          progress=False)
        seconds = time.perf_counter() - t0
    finally:
        inference.generate = original
    answers = {r["id"]: r.get("answer") for r in map(json.loads, out.read_text().splitlines())}
    return {"engine": "hf", "requests": len(records), "answered": summary.done, "failed": summary.failed,
            "seconds": seconds, "tokens": sum(tokens), "answers": answers,
            "batch_size": args.batch_size, "workers": args.workers, "torch_threads": torch.get_num_threads()}


def run_vllm(args) -> dict:
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if args.multiprocessing else "0"
    from onellm.generation import GenerationConfig
    from onellm.vllm.engine import OneLLMEngine

    t_load = time.perf_counter()
    engine = OneLLMEngine(args.model, dtype="float32", kv_cache_gib=args.kv_cache_gib, max_num_seqs=args.max_num_seqs)
    load_seconds = time.perf_counter() - t_load
    from onellm.data.datasets import default_prompt

    records = _records(args.manifest)
    gen = GenerationConfig(temperature=0, max_new_tokens=args.max_new_tokens)
    engine.generate([engine.request("Warm up.")], gen)  # first-call compilation and allocation, text only
    t0 = time.perf_counter()
    requests = [engine.request(default_prompt(r), [(str(getattr(i.modality, "value", i.modality)), i.as_source())
                                                   for i in r.inputs]) for r in records]
    out = engine.generate(requests, gen)
    seconds = time.perf_counter() - t0
    return {"engine": "vllm", "requests": len(records), "answered": len(records), "failed": 0, "seconds": seconds,
            "tokens": sum(len(v) for v in out.token_ids), "answers": {r.id: t for r, t in zip(records, out.texts)},
            "engine_start_seconds": load_seconds,
            "multiprocessing": bool(args.multiprocessing), "max_num_seqs": args.max_num_seqs}


def compare(paths: list[Path]) -> dict:
    runs = [json.loads(Path(p).read_text()) for p in paths]
    hf = next(r for r in runs if r["engine"] == "hf")
    rows = []
    for r in runs:
        same = sum(r["answers"].get(k) == v for k, v in hf["answers"].items())
        rows.append({"engine": r["engine"], "multiprocessing": r.get("multiprocessing"), "requests": r["requests"],
                     "seconds": round(r["seconds"], 2), "requests_per_s": round(r["requests"] / r["seconds"], 2),
                     "tokens_per_s": round(r["tokens"] / r["seconds"], 1), "tokens": r["tokens"],
                     "speedup_vs_hf": round(hf["seconds"] / r["seconds"], 2), "same_answers_as_hf": same})
    return {"rows": rows}


# ------------------------------------------------------------------------------------------------------------
# The "inference engines" section of `onellm bench`

NOT_INSTALLED = "vllm not installed (see docs/vllm.md)"
VLLM_PRESET_OVERRIDES = {"tiny": ["llm.num_heads=2", "llm.num_kv_heads=2"]}  # vLLM's CPU attention: head size 32


def find_vllm_python(explicit: str | None = None) -> str | None:
    """An interpreter that can import vLLM: ``explicit``, ``$ONELLM_VLLM_PYTHON``, this one, the repository's
    ``.venv-vllm/bin/python`` (in that order); None when there is none."""
    import subprocess

    from onellm.inference import vllm_available

    if explicit:
        return explicit
    if os.environ.get("ONELLM_VLLM_PYTHON"):
        return os.environ["ONELLM_VLLM_PYTHON"]
    if vllm_available():
        return sys.executable
    import onellm

    for root in (Path(onellm.__file__).resolve().parents[1], Path.cwd()):
        candidate = root / ".venv-vllm" / "bin" / "python"
        if candidate.is_file():
            probe = subprocess.run([str(candidate), "-c", "import importlib.util, sys; "
                                    "sys.exit(importlib.util.find_spec('vllm') is None)"], capture_output=True)
            if probe.returncode == 0:
                return str(candidate)
    return None


def build_workload(out: Path, preset: str, requests: int, sharpen: float = 4.0, seed: int = 1) -> tuple[Path, Path]:
    """``out/model`` (``onellm init --preset``, random weights, LM head x ``sharpen``) and ``out/requests.jsonl``:
    ``requests`` of the synthetic world's test requests taken round-robin over the modalities, plus one text-only."""
    import torch

    from onellm.cli import main as cli
    from onellm.model import OneLLMForConditionalGeneration
    from onellm.processing import OneLLMProcessor

    out.mkdir(parents=True, exist_ok=True)
    per_modality = max(1, -(-requests // 24))  # each world item gives 3+ requests (caption, questions)
    if cli(["synth", "--out", str(out / "world"), "--per-modality", str(per_modality), "--preset", preset,
            "--split", "test", "--seed", "3"]) != 0:
        raise RuntimeError("onellm synth failed")
    model_dir = out / "model"
    overrides = VLLM_PRESET_OVERRIDES.get(preset, [])
    if cli(["init", "--preset", preset, "--out", str(model_dir), "--seed", str(seed)]
           + (["--set", *overrides] if overrides else [])) != 0:
        raise RuntimeError("onellm init failed")
    if sharpen != 1:
        model = OneLLMForConditionalGeneration.from_pretrained(model_dir)
        with torch.no_grad():
            model.llm.lm_head.weight.mul_(sharpen)
        model.save_pretrained(model_dir, processor=OneLLMProcessor.from_pretrained(model_dir))
        del model
    world = out / "world" / "test"
    rows = [json.loads(line) for line in (world / "requests.jsonl").read_text().splitlines() if line.strip()]
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["inputs"][0]["modality"], []).append(r)
    mixed = [g[i] for i in range(max(map(len, groups.values()))) for g in groups.values() if i < len(g)]
    chosen = mixed[:requests] + [{"id": "text-only", "inputs": [], "prompt": "What is a red circle?"}]
    for r in chosen:
        for inp in r["inputs"]:
            for key in ("path", "rgb", "timestamps"):
                if key in inp and not Path(inp[key]).is_absolute():
                    inp[key] = str((world / inp[key]).resolve())
    manifest = out / "requests.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in chosen))
    return model_dir, manifest


def _answers(path: Path) -> dict[str, str | None]:
    return {str(r["id"]): r.get("answer") for r in map(json.loads, path.read_text().splitlines())}


def run_hf_engine(model_dir: Path, manifest: Path, out: Path, *, device: str = "cpu", dtype: str = "fp32",
                  max_new_tokens: int = 32, batch_size: int = 8, workers: int = 2) -> dict:
    """``onellm infer`` (HF engine, its defaults: batch 8, 2 workers) on the manifest, timed as run_inference
    reports it (model load excluded; one warm-up generate first)."""
    import torch

    import onellm.inference as inference
    from onellm.data.manifest import read_manifest
    from onellm.generation import GenerationConfig

    torch.manual_seed(0)
    model = inference.load_for_inference(model_dir, device=device, dtype=dtype)
    processor = inference.processor_of(model)
    gen = GenerationConfig(temperature=0, max_new_tokens=max_new_tokens)
    from onellm.data.collate import move_batch

    warm = processor.collate([processor.prompt_sample("Warm up.")], padding_side="left", with_labels=False)
    inference.generate(model, processor, move_batch(warm, next(model.parameters()).device), gen)
    records = read_manifest(manifest)
    tokens = []
    original = inference.generate

    def count(*a, **kw):
        result = original(*a, **kw)
        tokens.append(sum(len(x) for x in result.token_ids))
        return result

    out.unlink(missing_ok=True)
    inference.generate = count
    try:
        summary = inference.run_inference(model, records, out, batch_size=batch_size, num_workers=workers, gen=gen,
                                          progress=False)
    finally:
        inference.generate = original
    return {"engine": "hf", "requests": len(records), "answered": summary.done, "failed": summary.failed,
            "seconds": summary.seconds, "tokens": sum(tokens), "answers": _answers(out), "batch_size": batch_size,
            "workers": workers, "device": device, "dtype": dtype, "torch_threads": torch.get_num_threads()}


def run_vllm_engine(model_dir: Path, manifest: Path, out: Path, *, dtype: str = "fp32", max_new_tokens: int = 32,
                    batch_size: int = 8, workers: int = 2, max_num_seqs: int = 64, chunk_size: int | None = None,
                    kv_cache_gib: int = 4, multiprocessing: bool = True) -> dict:
    """``onellm infer --engine vllm`` (its defaults: max-num-seqs 64, chunks of 4 x that, batch 8, 2 workers) on
    the manifest, timed as run_inference reports it (engine start excluded, reported apart)."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if multiprocessing else "0"
    from onellm.data.manifest import read_manifest
    from onellm.generation import GenerationConfig
    from onellm.inference import run_inference
    from onellm.vllm.engine import engine_for_inference

    gen = GenerationConfig(temperature=0, max_new_tokens=max_new_tokens)
    t0 = time.perf_counter()
    engine = engine_for_inference(model_dir, dtype=dtype, max_num_seqs=max_num_seqs, kv_cache_gib=kv_cache_gib,
                                  max_new_tokens=max_new_tokens)
    start = time.perf_counter() - t0
    engine.generate([engine.request("Warm up.")], gen)
    records = read_manifest(manifest)
    tokens = []
    original = engine.generate

    def count(*a, **kw):
        result = original(*a, **kw)
        tokens.append(sum(len(x) for x in result.token_ids))
        return result

    engine.generate = count
    out.unlink(missing_ok=True)
    summary = run_inference(engine, records, out, batch_size=batch_size, num_workers=workers, gen=gen,
                            progress=False, engine="vllm", engine_options={"chunk_size": chunk_size})
    return {"engine": "vllm", "requests": len(records), "answered": summary.done, "failed": summary.failed,
            "seconds": summary.seconds, "tokens": sum(tokens), "answers": _answers(out),
            "engine_start_seconds": start, "multiprocessing": multiprocessing, "max_num_seqs": max_num_seqs,
            "chunk_size": chunk_size or 4 * max_num_seqs, "batch_size": batch_size, "workers": workers,
            "dtype": dtype}


def inference_engines(preset: str = "small", device: str = "cpu", dtype: str = "fp32", requests: int = 128,
                      new_tokens: int = 32, vllm_python: str | None = None, workdir: str | Path | None = None,
                      log=print, multiprocessing: bool = True) -> dict:
    """The section "inference engines": samples/s of the HF and the vLLM engine on the same requests, and the
    ratio, in one run. Without a vLLM environment: ``{"status": NOT_INSTALLED}``."""
    import subprocess
    import tempfile

    python = find_vllm_python(vllm_python)
    base = {"preset": preset, "device": device, "dtype": dtype, "requests": requests + 1, "new_tokens": new_tokens}
    if python is None:
        return {**base, "status": NOT_INSTALLED}
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="onellm-bench-engines-")
        workdir = tmp.name
    work = Path(workdir)
    try:
        log(f"inference engines: workload ({preset}, {requests} + 1 requests) ...")
        model_dir, manifest = build_workload(work, preset, requests)
        log("inference engines: hf ...")
        hf = run_hf_engine(model_dir, manifest, work / "hf.jsonl", device=device, dtype=dtype,
                           max_new_tokens=new_tokens)
        log(f"inference engines: vllm ({python}) ...")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_ENABLE_V1")}
        cmd = [python, "-m", "onellm.vllm.bench", "infer", "--model", str(model_dir), "--manifest", str(manifest),
               "--out", str(work / "vllm.json"), "--max-new-tokens", str(new_tokens), "--dtype", dtype]
        if not multiprocessing:
            cmd.append("--in-process")
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            return {**base, "status": f"vllm run failed (exit {run.returncode})", "log": run.stderr[-4000:],
                    "hf": {k: v for k, v in hf.items() if k != "answers"}}
        vllm = json.loads((work / "vllm.json").read_text())
    finally:
        if tmp is not None:
            tmp.cleanup()
    same = sum(vllm["answers"].get(k) == v for k, v in hf["answers"].items())
    rows = {}
    for r in (hf, vllm):
        rows[r["engine"]] = {k: v for k, v in r.items() if k != "answers"}
        rows[r["engine"]].update(samples_per_s=r["requests"] / r["seconds"], tokens_per_s=r["tokens"] / r["seconds"])
    return {**base, "status": "ok", "vllm_python": python, **rows,
            "ratio": rows["vllm"]["samples_per_s"] / rows["hf"]["samples_per_s"], "same_answers": same}


def format_engines(res: dict) -> list[str]:
    """The lines `onellm bench` prints for the section."""
    if "preset" not in res:
        return [f"inference engines: {res.get('status')}"]
    head = (f"inference engines ({res['preset']}, {res['requests']} requests, {res['new_tokens']} new tokens, "
            f"greedy, {res['dtype']}):")
    if res.get("status") != "ok":
        return [head, f"  {res.get('status')}"]
    hf, vl = res["hf"], res["vllm"]
    mode = "engine core in its own process" if vl.get("multiprocessing") else "in-process"
    return [head,
            f"  hf    {hf['samples_per_s']:8.2f} samples/s {hf['tokens_per_s']:8.1f} tokens/s ({hf['seconds']:.1f} s)",
            f"  vllm  {vl['samples_per_s']:8.2f} samples/s {vl['tokens_per_s']:8.1f} tokens/s ({vl['seconds']:.1f} s; "
            f"{mode}, engine start {vl['engine_start_seconds']:.0f} s not counted)",
            f"  vllm / hf: x{res['ratio']:.2f}; same answers {res['same_answers']}/{res['requests']}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m onellm.vllm.bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("hf", "vllm"):
        s = sub.add_parser(name)
        s.add_argument("--model", required=True, type=Path)
        s.add_argument("--manifest", required=True, type=Path)
        s.add_argument("--out", required=True, type=Path)
        s.add_argument("--max-new-tokens", type=int, default=32)
        if name == "hf":
            s.add_argument("--batch-size", type=int, default=16)
            s.add_argument("--workers", type=int, default=1)
        else:
            s.add_argument("--multiprocessing", action="store_true", help="vLLM's default engine-core process")
            s.add_argument("--max-num-seqs", type=int, default=256)
            s.add_argument("--kv-cache-gib", type=float, default=4)
    c = sub.add_parser("compare")
    c.add_argument("runs", nargs="+", type=Path)
    i = sub.add_parser("infer", help="run_inference(engine='vllm') on the manifest (vLLM env)")
    i.add_argument("--model", required=True, type=Path)
    i.add_argument("--manifest", required=True, type=Path)
    i.add_argument("--out", required=True, type=Path)
    i.add_argument("--max-new-tokens", type=int, default=32)
    i.add_argument("--dtype", default="fp32")
    i.add_argument("--max-num-seqs", type=int, default=64)
    i.add_argument("--in-process", action="store_true", help="VLLM_ENABLE_V1_MULTIPROCESSING=0")
    e = sub.add_parser("engines", help="the 'inference engines' section of onellm bench (main env)")
    e.add_argument("--preset", default="small")
    e.add_argument("--device", default="cpu")
    e.add_argument("--dtype", default="fp32")
    e.add_argument("--requests", type=int, default=128)
    e.add_argument("--max-new-tokens", type=int, default=32)
    e.add_argument("--vllm-python", default=None)
    e.add_argument("--workdir", type=Path, default=None)
    e.add_argument("--in-process", action="store_true")
    e.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cmd == "infer":
        result = run_vllm_engine(args.model, args.manifest, args.out.with_suffix(".answers.jsonl"),
                                 dtype=args.dtype, max_new_tokens=args.max_new_tokens, max_num_seqs=args.max_num_seqs,
                                 multiprocessing=not args.in_process)
        args.out.write_text(json.dumps(result))
        return 0
    if args.cmd == "engines":
        res = inference_engines(args.preset, args.device, args.dtype, args.requests, args.max_new_tokens,
                                args.vllm_python, args.workdir, log=lambda m: print(m, file=sys.stderr, flush=True),
                                multiprocessing=not args.in_process)
        if args.out:
            args.out.write_text(json.dumps(res, indent=1))
        print("\n".join(format_engines(res)))
        return 0 if res.get("status") == "ok" else 1
    if args.cmd == "compare":
        report = compare(args.runs)
        for row in report["rows"]:
            print(json.dumps(row))
        return 0
    result = run_hf(args) if args.cmd == "hf" else run_vllm(args)
    args.out.write_text(json.dumps(result))
    print(f"{result['engine']}: {result['requests']} requests, {result['tokens']} tokens in {result['seconds']:.1f} s "
          f"({result['requests'] / result['seconds']:.2f} req/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
