"""Batch inference over a manifest: resumable JSONL in, JSONL out (``onellm infer``), on one or many ranks.

* Inputs are loaded in DataLoader workers while the model generates.
* Requests are grouped by modality key and prompt length, so a batch encodes few modality groups and pads little.
* One JSON line per request (``id``, ``answer``, timing) is written and flushed as soon as its batch is done;
  re-running the same command skips ids already in the output, so a kill loses at most the batch in flight and
  never duplicates a line. A torn last line (killed mid-write) is dropped on resume.
* A request whose input is bad gets a line with an ``error`` field; the run goes on.
* Under ``torchrun`` / ``accelerate launch`` (WORLD_SIZE > 1) requests are sharded over ranks; each rank writes
  ``<output>.rank<k>`` and rank 0 merges them into the output once all ranks are done.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch.utils.data import DataLoader

from .data.datasets import Collator, RequestDataset
from .data.manifest import Record, read_manifest
from .generation import GenerationConfig, generate


@dataclass
class InferenceSummary:
    total: int = 0
    skipped: int = 0  # already in the output (resume)
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def all_failed(self) -> bool:
        return self.done + self.failed > 0 and self.done == 0


def read_done_ids(path: Path) -> set[str]:
    """Ids already answered in ``path``; a torn trailing line is truncated away so appends stay valid JSONL."""
    if not path.exists():
        return set()
    done: set[str] = set()
    good_bytes = 0
    with path.open("rb") as f:
        for raw in f:
            try:
                row = json.loads(raw)
                done.add(str(row["id"]))
            except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
                break  # only a kill mid-write produces this, and only on the last line
            good_bytes += len(raw)
    if good_bytes < path.stat().st_size:
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    return done


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun / accelerate (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _length_batches(dataset: RequestDataset, batch_size: int) -> list[list[int]]:
    """Batches of requests sharing a modality key, with similar prompt lengths."""
    keys, lengths = dataset.modality_keys(), dataset.lengths()
    order = sorted(range(len(dataset)), key=lambda i: (keys[i], lengths[i]))
    batches, current = [], []
    for i in order:
        if current and (len(current) == batch_size or keys[current[0]] != keys[i]):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class _Writer:
    """Appends JSON lines and makes them durable batch by batch."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = path.open("a", encoding="utf-8")

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def run_inference(model, records: Sequence[Record], output: str | Path, batch_size: int = 8,
                  gen: GenerationConfig | None = None, num_workers: int = 2,
                  template: Literal["chat", "none"] = "chat", progress: bool = True,
                  extra_fields: Callable[[Record], dict[str, Any]] | None = None) -> InferenceSummary:
    """Answer every record not yet in ``output``; see the module docstring. Returns counts and timings."""
    from tqdm import tqdm

    output = Path(output)
    rank, world = init_distributed()
    part = output if world == 1 else output.with_name(f"{output.name}.rank{rank}")
    records = list(records)
    summary = InferenceSummary(total=len(records))
    merged = read_done_ids(output)  # every rank sees the same merged output: the sharding agrees across ranks
    todo = [r for r in records if r.id not in merged][rank::world]
    if part != output:
        own = read_done_ids(part)  # this rank's unmerged lines from a killed run
        todo = [r for r in todo if r.id not in own]
    summary.skipped = len(records) - len(todo) if world == 1 else len(merged)
    by_id = {r.id: r for r in todo}
    device = next(model.parameters()).device
    dtype = next(model.upm.parameters()).dtype
    gen = gen or GenerationConfig()
    start = time.perf_counter()
    writer = _Writer(part)
    try:
        if todo:
            dataset = RequestDataset(todo, model.tokenizer, model.config, template=template)
            loader = DataLoader(dataset, batch_sampler=_length_batches(dataset, batch_size), num_workers=num_workers,
                                collate_fn=Collator(pad_id=model.config.llm.pad_token_id, padding_side="left",
                                                    with_labels=False),
                                persistent_workers=False, prefetch_factor=2 if num_workers else None)
            bar = tqdm(total=len(todo), disable=not progress or rank != 0, unit="req", dynamic_ncols=True)
            for batch in loader:
                rows = [{"id": rid, "error": err} for rid, err in batch["failed"]]
                summary.failed += len(rows)
                summary.errors += batch["failed"]
                if batch["ids"]:
                    from .data.collate import move_batch

                    t0 = time.perf_counter()
                    out = generate(model, move_batch(batch, device, dtype), gen)
                    took = time.perf_counter() - t0
                    for rid, text in zip(batch["ids"], out.texts):
                        row = {"id": rid, "answer": text, "seconds": round(took / len(batch["ids"]), 4)}
                        if extra_fields is not None:
                            row.update(extra_fields(by_id[rid]))
                        rows.append(row)
                    summary.done += len(batch["ids"])
                writer.write(rows)
                bar.update(len(rows))
                elapsed = time.perf_counter() - start
                bar.set_postfix(samples_per_s=f"{(summary.done + summary.failed) / max(elapsed, 1e-9):.2f}")
            bar.close()
    finally:
        writer.close()
    if world > 1:
        _merge_parts(output, world, rank)
    summary.seconds = time.perf_counter() - start
    return summary


def _merge_parts(output: Path, world: int, rank: int) -> None:
    """Rank 0 appends every rank's part to the output (skipping ids already there) once all ranks finished."""
    torch.distributed.barrier()
    if rank != 0:
        torch.distributed.barrier()
        return
    done = read_done_ids(output)
    writer = _Writer(output)
    try:
        for r in range(world):
            part = output.with_name(f"{output.name}.rank{r}")
            if not part.exists():
                continue
            rows = []
            for line in part.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if str(row.get("id")) not in done:
                    done.add(str(row["id"]))
                    rows.append(row)
            writer.write(rows)
            part.unlink()
    finally:
        writer.close()
    torch.distributed.barrier()


def resolve_device(device: str = "auto") -> torch.device:
    """"auto": this rank's GPU (LOCAL_RANK) when there is one, else the CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto": bf16 on a GPU that supports it, fp16 on older GPUs, fp32 on CPU."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, fp32, bf16 or fp16")
    return table[dtype]


def load_for_inference(model_dir: str | Path, device: str = "auto", dtype: str = "auto"):
    from .model import OneLLM

    dev = resolve_device(device)
    model = OneLLM.from_pretrained(model_dir, device=dev, dtype=resolve_dtype(dtype, dev))
    if model.tokenizer is None:
        raise ValueError(f"{model_dir}: the model directory has no tokenizer files")
    return model


def infer_manifest(model_dir: str | Path, input_path: str | Path, output: str | Path, **kwargs: Any
                   ) -> InferenceSummary:
    """``onellm infer`` as a function: load the model, read the manifest, answer, return the summary."""
    device, dtype = kwargs.pop("device", "auto"), kwargs.pop("dtype", "auto")
    init_distributed()
    records = read_manifest(input_path)
    model = load_for_inference(model_dir, device, dtype)
    return run_inference(model, records, output, **kwargs)


def print_summary(summary: InferenceSummary, output: Path, stream=None) -> None:
    stream = stream or sys.stdout
    rate = (summary.done + summary.failed) / summary.seconds if summary.seconds else 0.0
    print(f"{summary.total} requests: {summary.done} answered, {summary.failed} failed, "
          f"{summary.skipped} already in {output}; {summary.seconds:.1f} s ({rate:.2f} req/s)", file=stream)
    for rid, err in summary.errors[:10]:
        print(f"  error {rid}: {err}", file=stream)
    if len(summary.errors) > 10:
        print(f"  ... and {len(summary.errors) - 10} more (see the 'error' lines in {output})", file=stream)
