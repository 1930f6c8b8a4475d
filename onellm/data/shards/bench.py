"""Numbers for ``onellm bench``'s data-loading section: shards vs extracted files, and the memory a dataset of
millions of samples costs on the main process (manifest records, the manifest index, shards).

* :func:`shards_vs_files`: samples/s per modality through the training DataLoader (the real batch sampler, the
  training augmentations), from the synthetic world's files (``AlignmentDataset`` over its manifest) and from the
  same samples as shards (``ShardDataset``), for each worker count.
* :func:`manifest_rss`: peak RSS of a fresh process holding a dataset of ``lines`` samples and its sampler: a
  list of Records (``read_manifest``; measured on ``records_lines`` and scaled), the offset index
  (``ManifestIndex``), the memory-mapped cached index, and shards (a ``shards.json`` of ``lines`` samples in
  10,000-sample shards; the tars are sparse files: the main process never opens them). Each above a bare
  process that imported the same modules.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _loader_rate(dataset, sampler, collator, workers: int) -> float:
    from torch.utils.data import DataLoader

    loader = iter(DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, num_workers=workers,
                             prefetch_factor=4 if workers else None))
    next(loader)  # worker start-up is a one-off per epoch: measure the steady state
    t = time.perf_counter()
    count = sum(len(b["ids"]) + len(b["failed"]) for b in loader)
    return count / (time.perf_counter() - t)


def shards_vs_files(config=None, workers: tuple[int, ...] = (0, 2), n: int = 96, batch_size: int = 8,
                    shard_size: int = 32, shuffle_buffer: int = 32, modalities: list[str] | None = None) -> dict:
    """{modality: {"files_workers_W": samples/s, "shards_workers_W": samples/s, "ratio_workers_W": shards/files}}
    on ``n`` synthetic samples per modality (``config``: the geometry, default the ``small`` preset)."""
    from ...config import OneLLMConfig
    from ...processing import OneLLMProcessor
    from ..datasets import AlignmentDataset, Collator
    from ..manifest import read_manifest
    from ..samplers import ModalityBatchSampler, ShardedGroup
    from ..synth import generate_world
    from ..synth.world import corpus_lines
    from ..text import load_tokenizer, train_sentencepiece
    from .dataset import ShardDataset
    from .index import ShardSet
    from .writer import write_shards

    config = config or OneLLMConfig.preset("small")
    modalities = modalities or list(config.modalities)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get("ONELLM_INDEX_CACHE")
        os.environ["ONELLM_INDEX_CACHE"] = str(Path(tmp) / "index")
        try:
            generate_world(tmp, n, seed=0, modalities=modalities, config=config)
            tok = load_tokenizer(train_sentencepiece(corpus_lines() * 2, Path(tmp) / "tok", 300))
            processor = OneLLMProcessor.for_config(config, tok)
            records = read_manifest(Path(tmp) / "train" / "alignment.jsonl")
            write_shards(records, Path(tmp) / "shards", max_count=shard_size)
            collator = Collator(processor)
            for m in modalities:
                subset = [r for r in records if r.modality_key == m]
                files = AlignmentDataset(subset, processor, train=True, seed=0)
                shards = ShardDataset(ShardSet.open(Path(tmp) / "shards" / m), m, processor, train=True, seed=0)
                row = out.setdefault(m, {})
                for w in workers:
                    row[f"files_workers_{w}"] = _loader_rate(
                        files, ModalityBatchSampler([list(range(len(files)))], batch_size), collator, w)
                    row[f"shards_workers_{w}"] = _loader_rate(
                        shards, ModalityBatchSampler([ShardedGroup(shards.shards.sizes, 0, shuffle_buffer)],
                                                     batch_size), collator, w)
                    row[f"ratio_workers_{w}"] = row[f"shards_workers_{w}"] / row[f"files_workers_{w}"]
        finally:
            if old is None:
                os.environ.pop("ONELLM_INDEX_CACHE", None)
            else:
                os.environ["ONELLM_INDEX_CACHE"] = old
    return out


_MEASURE = r"""
import json, resource, sys, time
import numpy as np
from onellm.data.manifest import ManifestIndex, read_manifest
from onellm.data.samplers import ModalityBatchSampler, ShardedGroup
kind, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
n = 0
if kind == "records":
    records = read_manifest(path, require="caption")
    n = len(records)
    sampler = ModalityBatchSampler([np.arange(n)], 40, 8, 0)
elif kind in ("index", "cached"):
    index = ManifestIndex.open(path, require="caption", cache_dir=sys.argv[3] if kind == "cached" else None)
    n = len(index)
    sampler = ModalityBatchSampler([np.arange(n)], 40, 8, 0)
    index[n - 1]
elif kind == "shards":
    from onellm.data.shards import ShardSet
    shards = ShardSet.open(path)
    n = len(shards)
    sampler = ModalityBatchSampler([ShardedGroup(shards.sizes, 0, 10_000)], 40, 8, 0)
if kind != "bare":
    it = iter(sampler)
    for _ in range(100):
        next(it)
    sampler.set_state(0, sampler.num_batches(0) // 2)  # a resume half way: skipping costs nothing
    next(iter(sampler))
print(json.dumps({"samples": n, "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _measure(kind: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _MEASURE, kind, *args], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_manifest(path: Path, lines: int) -> Path:
    """A LAION-like image manifest of ``lines`` lines (ids, relative paths, one caption each)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(json.dumps({"id": f"laion-{i:010d}", "inputs": [{"modality": "image",
                                                                      "path": f"{i // 10_000:05d}/{i:010d}.jpg"}],
                                "caption": f"a photograph of item number {i} on a wooden table"}) + "\n")
    return path


def manifest_rss(lines: int = 5_000_000, records_lines: int = 500_000, workdir: str | Path | None = None) -> dict:
    """Peak RSS (MB) above a bare process, per dataset kind, for ``lines`` samples (see the module docstring)."""
    from .index import DESCRIPTOR, DESCRIPTOR_FORMAT

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp = Path(tmp)
        bare = _measure("bare", "-")["peak_rss_mb"]
        out: dict[str, Any] = {"lines": lines, "bare_process_mb": bare}
        big = write_manifest(tmp / "big.jsonl", lines)
        out["manifest_file_mb"] = big.stat().st_size / 2**20
        small = write_manifest(tmp / "small.jsonl", min(records_lines, lines))
        rec = _measure("records", str(small))
        out["records"] = {"measured_lines": rec["samples"], "mb": rec["peak_rss_mb"] - bare,
                          "mb_scaled_to_lines": (rec["peak_rss_mb"] - bare) * lines / rec["samples"],
                          "seconds": rec["seconds"]}
        idx = _measure("index", str(big))
        out["index"] = {"mb": idx["peak_rss_mb"] - bare, "bytes_per_line": (idx["peak_rss_mb"] - bare) * 2**20 / lines,
                        "seconds": idx["seconds"]}
        _measure("cached", str(big), str(tmp / "cache"))  # builds the cache
        cached = _measure("cached", str(big), str(tmp / "cache"))
        out["index_cached_mmap"] = {"mb": cached["peak_rss_mb"] - bare, "seconds": cached["seconds"]}
        big.unlink()
        folder = tmp / "shards"
        folder.mkdir()
        shards = []
        for s in range((lines + 9_999) // 10_000):
            tar = folder / f"{s:05d}.tar"
            with tar.open("wb") as f:
                f.truncate(10_000 * 40 * 1024)  # sparse: the size a 10,000-image shard has; nothing is written
            shards.append({"path": tar.name, "samples": min(10_000, lines - s * 10_000), "bytes": tar.stat().st_size})
        (folder / DESCRIPTOR).write_text(json.dumps({"format": DESCRIPTOR_FORMAT, "modality": "image",
                                                     "shards": shards}))
        sh = _measure("shards", str(folder))
        out["shards"] = {"shards": len(shards), "mb": sh["peak_rss_mb"] - bare, "seconds": sh["seconds"]}
    return out


def format_rss(res: dict) -> str:
    lines = res["lines"]
    return "\n".join([
        f"dataset memory for {lines:,} samples (peak RSS above a bare process of {res['bare_process_mb']:.0f} MB; "
        f"manifest {res['manifest_file_mb']:.0f} MB):",
        f"  list of Records (read_manifest): {res['records']['mb_scaled_to_lines']:,.0f} MB "
        f"(measured {res['records']['mb']:.0f} MB on {res['records']['measured_lines']:,} lines)",
        f"  ManifestIndex (in memory):       {res['index']['mb']:,.0f} MB ({res['index']['bytes_per_line']:.0f} B/line, "
        f"built in {res['index']['seconds']:.0f} s)",
        f"  ManifestIndex (cached, mmap):    {res['index_cached_mmap']['mb']:,.0f} MB "
        f"(opened in {res['index_cached_mmap']['seconds']:.1f} s)",
        f"  shards ({res['shards']['shards']} x 10,000):         {res['shards']['mb']:,.0f} MB "
        f"(opened in {res['shards']['seconds']:.1f} s)"])


def main(argv: list[str] | None = None) -> int:  # python -m onellm.data.shards.bench [--lines N]
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=5_000_000)
    p.add_argument("--records-lines", type=int, default=500_000)
    p.add_argument("--loading", action="store_true", help="also shards vs files samples/s (small preset)")
    p.add_argument("--n", type=int, default=48, help="--loading: samples per modality")
    args = p.parse_args(argv)
    if args.loading:
        print(json.dumps(shards_vs_files(n=args.n), indent=1))
    res = manifest_rss(args.lines, args.records_lines)
    print(json.dumps(res, indent=1))
    print(format_rss(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
