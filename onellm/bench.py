"""``onellm bench``: throughput and efficiency, measured as ratios taken in the same run.

Everything runs in one process on random weights of a preset (``small`` is big enough that matrix multiplies
dominate on a CPU; ``tiny`` is overhead-bound). Sections:

1. ``peak``: dense matmul throughput (FLOP/s) in the run's dtype and device — the denominator of MFU.
2. ``train``: optimizer steps of stage I (image), stage II (audio, point) and instruction tuning: samples/s,
   tokens/s, peak memory, model FLOPs per step and MFU. FLOPs are counted by ``torch.utils.flop_counter`` over one
   real forward + backward (every matmul, convolution and attention actually executed, so frozen parts count
   their forward and the input-gradient half of their backward, and parts under ``no_grad`` count once).
3. ``feature_cache``: stage I steps/s with cached CLIP features vs running CLIP every step, the FLOPs each step
   does, and (full runs) the same FLOP count for OneLLM-7B built on the meta device: the encoder's share of a
   stage I step bounds what any cache can save (Amdahl), whatever the hardware.
4. ``padding``: instruction steps/s with dynamic padding (length-grouped batches) vs padding to 2018 tokens, on
   lengths drawn from a LLaVA-like distribution (log-normal, median ~150 tokens, capped at 2018).
5. ``generation``: greedy samples/s at batch 1, 4, 16; prefill and decode tokens/s.
6. ``loading``: samples/s of the real loaders on synthetic files per modality with 0, 2, 4 workers, next to what
   the training step consumes.
7. ``point``: time per cloud of FPS (8192 -> 1024) + kNN grouping.
   ``loading_shards``: the training DataLoader's samples/s reading webdataset tar shards vs the same samples as
   extracted files; ``dataset_memory`` (not with --quick): peak RSS of a 5M-sample dataset held as a list of
   records, a ``ManifestIndex`` (in memory, cached) and shards (:mod:`onellm.data.shards.bench`).
8. ``engines`` ("inference engines"): samples/s of ``onellm infer`` with the HF engine and with the vLLM engine on
   the same requests (every modality; 128 + 1 by default, 32 new tokens, greedy) and their ratio, measured in the
   same run (:func:`onellm.vllm.bench.inference_engines`; the vLLM side runs in the vLLM environment). Without
   one the section says "vllm not installed (see docs/vllm.md)".

The command line (``onellm bench``, results under ``runs/bench/`` by default) is ``onellm.commands.bench``.
"""
from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .config import OneLLMConfig
from .constants import IGNORE_INDEX
from .data.collate import move_batch
from .processing import collate, pack_sample
from .model import OneLLM, input_shape


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timeit(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def matmul_peak(device: torch.device, dtype: torch.dtype, quick: bool) -> float:
    """Best observed dense matmul rate: the fastest of several large square products (a peak, not a median)."""
    n = 2048 if device.type == "cpu" else 8192
    if quick:
        n //= 2
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(3 if quick else 10):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _batch(model: OneLLM, modality: str | None, batch: int, text_len: int, g: torch.Generator,
           labels_from: float = 0.0) -> dict:
    cfg = model.config
    samples = []
    for _ in range(batch):
        ids = [cfg.llm.bos_token_id] + torch.randint(3, cfg.llm.vocab_size, (text_len,), generator=g).tolist()
        start = 1 + int(labels_from * text_len)
        labels = [IGNORE_INDEX] * start + ids[start:]
        inputs = []
        if modality is not None:
            x = torch.rand(input_shape(cfg, modality), generator=g)
            inputs = [(modality, x)]
        samples.append(pack_sample(cfg, ids, labels, inputs))
    return collate(cfg, samples)


def _step_fn(model: OneLLM, opt: torch.optim.Optimizer, batch: dict, autocast: torch.dtype | None):
    device = next(model.parameters()).device

    def step():
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            out = model(**batch, return_logits=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def train_throughput(model: OneLLM, name: str, modality: str | None, batch_size: int, text_len: int,
                     trainable: dict, peak: float, repeats: int, autocast, labels_from: float = 0.0) -> dict:
    from .training.logger import peak_memory_gb

    device = next(model.parameters()).device
    model.set_trainable(**trainable)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    batch = move_batch(_batch(model, modality, batch_size, text_len, torch.Generator().manual_seed(0), labels_from),
                       device)
    step = _step_fn(model, opt, batch, autocast)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timeit(step, device, repeats)
    flops = count_flops(step)
    tokens = int(batch["attention_mask"].sum())
    return {"stage": name, "modality": modality or "text", "batch": batch_size,
            "seq_len": batch["input_ids"].shape[1], "step_s": seconds, "samples_per_s": batch_size / seconds,
            "tokens_per_s": tokens / seconds, "flops_per_step": flops, "mfu": flops / seconds / peak,
            "peak_memory_gb": peak_memory_gb(device), "trainable_params": sum(p.numel() for p in params)}


def feature_cache_ratio(model: OneLLM, batch_size: int, repeats: int, autocast) -> dict:
    device = next(model.parameters()).device
    model.set_trainable(tokenizers=False, upm=["image"], llm=False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    raw = move_batch(_batch(model, "image", batch_size, 24, torch.Generator().manual_seed(1)), device)
    with torch.no_grad():
        feats = model.encode_clip("image", raw["image_values"])  # what the cache would hold
    cached = {**{k: v for k, v in raw.items() if k != "image_values"}, "image_clip_features": feats}
    step_raw, step_cached = _step_fn(model, opt, raw, autocast), _step_fn(model, opt, cached, autocast)
    t_raw, t_cached = timeit(step_raw, device, repeats), timeit(step_cached, device, repeats)
    # the FLOP share of the frozen encoder bounds what the cache can save (Amdahl)
    f_raw, f_cached = count_flops(step_raw), count_flops(step_cached)
    return {"steps_per_s_encoder": 1 / t_raw, "steps_per_s_cached": 1 / t_cached, "ratio": t_raw / t_cached,
            "flops_per_step_encoder": f_raw, "flops_per_step_cached": f_cached, "flop_ratio": f_raw / f_cached}


def feature_cache_flop_bound(preset: str = "onellm-7b", text_lens: tuple[int, ...] = (16, 32, 64)) -> dict:
    """FLOPs of one stage I sample of ``preset`` (built on the meta device: nothing is allocated or run) split into
    the frozen CLIP forward, the UPM forward + backward, and the frozen LLM forward + input-gradient backward."""
    cfg = OneLLMConfig.preset(preset)
    meta = torch.device("meta")
    with meta:
        model = OneLLM(cfg)
    model.set_trainable(tokenizers=False, upm=["image"], llm=False)
    x = torch.empty((1, *input_shape(cfg, "image")), device=meta)
    with torch.no_grad():
        clip = count_flops(lambda: model.encode_clip("image", x))
        feats = model.encode_clip("image", x)  # (1, T, D_clip)
    upm = count_flops(lambda: model.project("image", feats).sum().backward())
    rows = {}
    for text in text_lens:
        length = 1 + model.block_length + text  # BOS, the modality block, the caption
        embeds = torch.empty(1, length, cfg.llm.hidden_size, device=meta, requires_grad=True)
        labels = torch.zeros(1, length, dtype=torch.long, device=meta)
        llm = count_flops(lambda: model.llm(inputs_embeds=embeds, labels=labels).loss.backward())
        total = clip + upm + llm
        rows[str(text)] = {"clip": clip, "upm": upm, "llm": llm, "bound": total / (total - clip)}
    return {"preset": preset, "caption_tokens": rows}


def padding_ratio(model: OneLLM, batch_size: int, n_batches: int, autocast, pad_to: int = 2018) -> dict:
    device = next(model.parameters()).device
    model.set_trainable(tokenizers=False, upm=False, llm=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(150), 0.8, batch_size * n_batches), 16, pad_to).astype(int)
    order = np.argsort(lengths)  # the length-grouped sampler's effect
    g = torch.Generator().manual_seed(2)

    def run(pad: bool) -> tuple[float, int]:
        """Seconds and token positions (padding included) of ``n_batches`` steps."""
        seconds, tokens = 0.0, 0
        for k in range(n_batches):
            idx = order[k * batch_size:(k + 1) * batch_size]
            samples = []
            for i in idx:
                n = int(lengths[i]) if not pad else pad_to
                ids = [1] + torch.randint(3, model.config.llm.vocab_size, (n,), generator=g).tolist()
                real = int(lengths[i])
                labels = ([IGNORE_INDEX] * (real // 2) + ids[real // 2: real + 1]
                          + [IGNORE_INDEX] * (len(ids) - real - 1))
                samples.append(pack_sample(model.config, ids, labels, []))
            batch = move_batch(collate(model.config, samples), device)
            tokens += int(batch["input_ids"].numel())
            seconds += timeit(_step_fn(model, opt, batch, autocast), device, repeats=1, warmup=0)
        return seconds, tokens

    run(False)  # warm-up
    (t_dynamic, tokens_dynamic), (t_fixed, tokens_fixed) = run(False), run(True)
    return {"mean_length": float(lengths.mean()), "pad_to": pad_to, "steps_per_s_dynamic": n_batches / t_dynamic,
            "steps_per_s_fixed": n_batches / t_fixed, "ratio": t_fixed / t_dynamic,
            "tokens_dynamic": tokens_dynamic, "tokens_fixed": tokens_fixed}


def generation_batching(model: OneLLM, sizes: tuple[int, ...], new_tokens: int, repeats: int) -> dict:
    from .generation import GenerationConfig, generate

    device = next(model.parameters()).device
    model.eval()
    # random weights: never stop early, so every batch size decodes equally long
    gen = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, temperature=0, stop_strings=())
    prefill_gen = GenerationConfig(max_new_tokens=1, temperature=0, stop_strings=())
    rows = {}
    g = torch.Generator().manual_seed(3)
    for b in sizes:
        batch = move_batch(collate(model.config, [_one_request(model, g) for _ in range(b)], padding_side="left",
                                   with_labels=False), device)
        t = timeit(lambda: generate(model, None, batch, gen), device, repeats)
        t1 = timeit(lambda: generate(model, None, batch, prefill_gen), device, repeats)
        prompt = int(batch["attention_mask"].sum())
        decode = t - t1
        # decoding time is the difference of two noisy timings: below 10 % of the total it is not measured
        rows[b] = {"samples_per_s": b / t, "prefill_tokens_per_s": prompt / t1,
                   "decode_tokens_per_s": b * (new_tokens - 1) / decode if decode > 0.1 * t else None}
    base = rows[sizes[0]]["samples_per_s"]
    for b in sizes:
        rows[b]["ratio_to_batch_1"] = rows[b]["samples_per_s"] / base
    return {str(b): r for b, r in rows.items()}


def _one_request(model: OneLLM, g: torch.Generator):
    cfg = model.config
    ids = [cfg.llm.bos_token_id] + torch.randint(3, cfg.llm.vocab_size, (24,), generator=g).tolist()
    x = torch.rand(input_shape(cfg, "image"), generator=g)
    return pack_sample(cfg, ids, None, [("image", x)])


def data_loading(config: OneLLMConfig, workers: tuple[int, ...], n: int, batch_size: int) -> dict:
    from torch.utils.data import DataLoader

    from .data.datasets import AlignmentDataset, Collator
    from .processing import OneLLMProcessor
    from .data.manifest import read_manifest
    from .data.synth import generate_world
    from .data.text import load_tokenizer, train_sentencepiece
    from .data.synth.world import corpus_lines

    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        generate_world(tmp, n, seed=0, modalities=config.modalities, config=config)
        tok = load_tokenizer(train_sentencepiece(corpus_lines() * 2, Path(tmp) / "tok", 300))
        processor = OneLLMProcessor.for_config(config, tok)
        records = read_manifest(Path(tmp) / "train" / "alignment.jsonl")
        for m in config.modalities:
            subset = [r for r in records if r.modality_key == m]
            ds = AlignmentDataset(subset, processor, train=True)
            for w in workers:
                loader = iter(DataLoader(ds, batch_size=batch_size, num_workers=w, collate_fn=Collator(processor),
                                         prefetch_factor=4 if w else None))
                next(loader)  # worker start-up is a one-off per epoch: measure the steady state
                t = time.perf_counter()
                count = sum(len(b["ids"]) for b in loader)
                out.setdefault(m, {})[f"workers_{w}"] = count / (time.perf_counter() - t)
    return out


def point_tokenizer(config: OneLLMConfig, device: torch.device, repeats: int) -> dict:
    from .model.point import furthest_point_sample, knn_group

    inp = config.inputs.point
    out = {}
    for b in (1, 8):
        pts = torch.rand(b, inp.num_points, 3, device=device)

        def run():
            idx = furthest_point_sample(pts, inp.num_groups)
            centres = torch.gather(pts, 1, idx[..., None].expand(-1, -1, 3))
            knn_group(pts, centres, inp.group_size)
        out[f"batch_{b}_ms_per_cloud"] = 1000 * timeit(run, device, repeats) / b
    out.update(points=inp.num_points, groups=inp.num_groups, group_size=inp.group_size)
    return out


def run_bench(preset: str = "small", device: str = "cpu", dtype: str = "fp32", quick: bool = False,
              log: Callable[[str], None] = print, engines_requests: int | None = None,
              vllm_python: str | None = None) -> dict:
    dev = torch.device(device)
    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    if preset == "onellm-7b" and dev.type != "cuda":
        from .errors import UsageError

        raise UsageError("the onellm-7b preset is only benchmarked on a GPU (bf16); use --preset small on a CPU")
    config = OneLLMConfig.preset(preset)
    torch.manual_seed(0)
    big = preset == "onellm-7b"
    if big:  # full-LLM steps on one GPU: checkpointed activations, weights (and so AdamW states) in the run's dtype
        config.gradient_checkpointing = True
    with dev:
        model = OneLLM(config)
    if big:
        model.to(dt)
    autocast = dt if dt != torch.float32 else None
    repeats = 2 if quick else 5
    bs = {"tiny": 8, "quickstart": 8, "small": 8, "onellm-7b": 4}.get(preset, 4)
    res: dict[str, Any] = {"preset": preset, "device": device, "dtype": dtype, "quick": quick,
                           "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                       "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                                       "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None}}
    log("peak matmul ...")
    res["peak_flops"] = matmul_peak(dev, dt, quick)
    log("training steps ...")
    text = 24 if quick else 48
    res["train"] = [
        train_throughput(model, "stage1", "image", bs, text, dict(tokenizers=False, upm=["image"], llm=False),
                         res["peak_flops"], repeats, autocast),
        train_throughput(model, "stage2", "audio", bs, text,
                         dict(tokenizers=["audio", "point"], upm=["audio"], llm=False), res["peak_flops"], repeats,
                         autocast),
        train_throughput(model, "stage2", "point", bs, text,
                         dict(tokenizers=["audio", "point"], upm=["point"], llm=False), res["peak_flops"], repeats,
                         autocast),
        train_throughput(model, "instruction", "image", bs // 2, 64 if quick else 256,
                         dict(tokenizers=False, upm=False, llm=True), res["peak_flops"], repeats, autocast,
                         labels_from=0.7),
    ]
    log("feature cache ...")
    res["feature_cache"] = feature_cache_ratio(model, bs, repeats, autocast)
    if not quick:
        res["feature_cache"]["flop_bound_7b"] = feature_cache_flop_bound()
    log("padding ...")
    res["padding"] = padding_ratio(model, batch_size=4 if not quick else 2, n_batches=2 if quick else 4,
                                   autocast=autocast, pad_to=256 if quick else 2018)
    log("generation ...")
    res["generation"] = generation_batching(model, (1, 4) if quick else (1, 4, 16), 8 if quick else 32,
                                            1 if quick else 3)
    log("data loading ...")
    res["loading"] = data_loading(config, (0, 2) if quick else (0, 2, 4), 12 if quick else 96, bs)
    log("data loading from tar shards ...")
    from .data.shards.bench import manifest_rss, shards_vs_files

    res["loading_shards"] = shards_vs_files(config, (0,) if quick else (0, 2), 3 * bs if quick else 48, bs)
    if quick:
        res["dataset_memory"] = {"status": "skipped with --quick (5M-line manifests take minutes)"}
    else:
        log("dataset memory (5M-sample manifest) ...")
        res["dataset_memory"] = manifest_rss(5_000_000, 500_000)
    log("point tokenizer ...")
    full_points = OneLLMConfig.preset("onellm-7b") if not quick else config
    res["point"] = point_tokenizer(full_points, dev, 1 if quick else 3)
    # the engines section builds its own workload and starts an engine (a minute or more): not part of --quick
    # unless asked for with engines_requests; 0 skips it
    n = engines_requests if engines_requests is not None else (0 if quick else 128)
    if n > 0:
        from .vllm.bench import inference_engines

        log("inference engines ...")
        del model  # the section loads its own model directory
        res["engines"] = inference_engines(preset, device, dtype, n, 8 if quick else 32, vllm_python=vllm_python,
                                           log=log)
    else:
        res["engines"] = {"status": "skipped" + (" with --quick" if quick else "")
                          + " (--engines-requests N runs it)"}
    return res


def format_bench(res: dict) -> str:
    lines = [f"onellm bench: preset {res['preset']}, {res['device']} {res['dtype']}",
             f"peak matmul: {res['peak_flops'] / 1e9:.1f} GFLOP/s", "",
             f"{'stage':12s} {'modality':9s} {'samples/s':>10s} {'tokens/s':>10s} {'GFLOP/step':>11s} {'MFU':>6s} {'peak GB':>8s}"]
    for r in res["train"]:
        lines.append(f"{r['stage']:12s} {r['modality']:9s} {r['samples_per_s']:10.2f} {r['tokens_per_s']:10.1f} "
                     f"{r['flops_per_step'] / 1e9:11.2f} {100 * r['mfu']:5.1f}% {r['peak_memory_gb']:8.2f}")
    fc, pd = res["feature_cache"], res["padding"]
    lines += ["", f"feature cache: {fc['steps_per_s_cached']:.2f} vs {fc['steps_per_s_encoder']:.2f} steps/s "
                  f"-> x{fc['ratio']:.2f} ({fc['flop_ratio']:.2f}x fewer FLOPs: the encoder's share bounds it)",
              *([f"  OneLLM-7B stage I per sample (CLIP fwd / UPM fwd+bwd / LLM fwd+input-grad bwd, GFLOP): "
                 + "; ".join(f"{t} caption tokens {r['clip'] / 1e9:.0f}/{r['upm'] / 1e9:.0f}/{r['llm'] / 1e9:.0f} "
                             f"-> cache bound x{r['bound']:.2f}"
                             for t, r in fc["flop_bound_7b"]["caption_tokens"].items())]
                if "flop_bound_7b" in fc else []),
              f"dynamic padding (mean length {pd['mean_length']:.0f}) vs pad to {pd['pad_to']}: "
              f"x{pd['ratio']:.2f} ({pd['tokens_fixed'] / pd['tokens_dynamic']:.1f}x the tokens when padded)", "", f"{'batch':>6s} {'samples/s':>10s} {'x batch 1':>10s} {'prefill tok/s':>14s} "
                                         f"{'decode tok/s':>13s}"]
    for b, r in res["generation"].items():
        decode = "not measured" if r["decode_tokens_per_s"] is None else f"{r['decode_tokens_per_s']:.1f}"
        lines.append(f"{b:>6s} {r['samples_per_s']:10.2f} {r['ratio_to_batch_1']:10.2f} "
                     f"{r['prefill_tokens_per_s']:14.1f} {decode:>13s}")
    consume = ", ".join(f"{r['stage']} {r['modality']} {r['samples_per_s']:.1f}" for r in res["train"])
    lines += ["", f"data loading (samples/s by workers; the training steps consume {consume} samples/s):"]
    for m, r in res["loading"].items():
        lines.append(f"  {m:8s} " + "  ".join(f"{k.split('_')[1]}w {v:8.1f}" for k, v in r.items()))
    if "loading_shards" in res:
        lines += ["", "data loading, tar shards vs extracted files (samples/s by workers, same samples):"]
        for m, r in res["loading_shards"].items():
            workers = sorted({k.rsplit("_", 1)[1] for k in r})
            lines.append(f"  {m:8s} " + "  ".join(f"{w}w files {r[f'files_workers_{w}']:7.1f} shards "
                                                  f"{r[f'shards_workers_{w}']:7.1f}" for w in workers))
    if "dataset_memory" in res:
        from .data.shards.bench import format_rss

        dm = res["dataset_memory"]
        lines += ["", f"dataset memory: {dm['status']}" if "status" in dm else format_rss(dm)]
    p = res["point"]
    lines += ["", f"point tokenizer ({p['points']} -> {p['groups']} x {p['group_size']}): "
                  f"{p['batch_1_ms_per_cloud']:.1f} ms/cloud alone, {p['batch_8_ms_per_cloud']:.1f} ms/cloud in a batch of 8"]
    if "engines" in res:
        from .vllm.bench import format_engines

        lines += ["", *format_engines(res["engines"])]
    return "\n".join(lines)
