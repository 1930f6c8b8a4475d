"""vLLM vs HF generate on the same requests (``.ci/vllm-bench.sh`` runs both and the comparison in one go).

    <main env>  python -m onellm.vllm.bench hf   --model DIR --manifest M --out hf.json   [--batch-size 16]
    <vLLM env>  python -m onellm.vllm.bench vllm --model DIR --manifest M --out vllm.json [--multiprocessing]
    <any>       python -m onellm.vllm.bench compare hf.json vllm.json [...]

Both sides answer every request of the manifest greedily (temperature 0), ``--max-new-tokens`` each, fp32 on the
CPU, and time the whole batch job from the first input load to the last answer, model loading excluded: the HF
side is ``onellm.inference.run_inference`` (what ``onellm infer`` runs: DataLoader, modality-grouped left-padded
batches, HF ``generate``), the vLLM side is one ``LLM.generate`` over all requests (inputs loaded by the
multimodal processor, continuous batching). Reported: requests/s, generated tokens/s, and how many answers equal
the HF side's. This module imports vLLM only in the ``vllm`` command.
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
    args = p.parse_args(argv)
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
