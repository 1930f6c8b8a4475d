"""Batch inference over a manifest: resumable JSONL in, JSONL out (``onellm infer``), on one or many ranks.

* Inputs are loaded in DataLoader workers while the model generates.
* Requests are grouped by modality key and prompt length, so a batch encodes few modality groups and pads little.
* One JSON line per request (``id``, ``answer``, timing) is written and fsynced as soon as its batch is done;
  re-running the same command skips ids already in the output, so a kill loses at most the batch in flight and
  never duplicates a line. Only a torn last line (killed mid-write) is dropped on resume; any other bad line is
  reported with its number and kept (``onellm.outputs``).
* A request that cannot be answered gets a line with an ``error`` field and the run goes on: a bad input file, a
  record with neither inputs nor a prompt, a prompt longer than the model's ``max_seq_len`` (checked here, in the
  main process, before anything would be cut).
* One writer per output: a second process on the same output stops at once (``<output>.lock``, fcntl).
* Under ``torchrun`` / ``accelerate launch`` (WORLD_SIZE > 1) requests are sharded over ranks; each rank writes
  ``<output>.rank<k>`` and rank 0 merges them into the output once all ranks are done.
"""
from __future__ import annotations

import contextlib
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
from .errors import UsageError
from .generation import GenerationConfig, generate
from .outputs import JsonlAppender, OutputLock, iter_rows, repair, scan_output


@dataclass
class InferenceSummary:
    total: int = 0
    skipped: int = 0  # already in the output (resume)
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    answered_before: int = 0  # requests of this manifest answered by earlier runs (in the output)
    failed_before: int = 0  # ... and those that got an error line in earlier runs
    warnings: list[str] = field(default_factory=list)  # bad lines found in the output (kept, ignored)

    @property
    def all_failed(self) -> bool:
        """Every request that was tried failed: none answered, in this run or an earlier one."""
        return self.done + self.answered_before == 0 and self.failed + self.failed_before > 0


def read_done_ids(path: str | Path) -> set[str]:
    """Ids that already have a line (answer or error) in ``path``. Read-only: a torn last line is ignored here
    (and removed by the next run that writes), a bad line elsewhere is skipped; see ``onellm.outputs``."""
    return scan_output(path).done


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


def request_problem(dataset: RequestDataset, record: Record) -> str | None:
    """Why ``record`` cannot be answered, checked in the main process before its inputs load: no prompt to ask
    (neither ``inputs`` nor ``prompt``), a malformed history, or a prompt longer than the model's context
    (the dataset would cut it to ``max_length`` positions, losing the ``### Assistant:`` ending)."""
    try:
        ids = dataset.text_ids(record)
    except Exception as exc:  # a bad record must become its error line, never kill a loader worker
        return str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    length = len(ids) + dataset.block_length * len(record.inputs)  # the packed length (blocks after BOS)
    if length > dataset.max_length:
        return (f"prompt of {length} positions ({len(ids)} text tokens + {len(record.inputs)} input blocks) exceeds "
                f"the model's {dataset.max_length}; shorten the prompt")
    return None


def output_lock(output: str | Path) -> OutputLock:
    """This rank's lock on ``output``: rank 0 locks ``<output>.lock`` (so a single-process run on the same output
    is refused too), rank k > 0 ``<output>.lock.rank<k>`` (its part; the name does not match ``<output>.rank*``)."""
    output = Path(output)
    rank, world = init_distributed()
    part = output if world == 1 else output.with_name(f"{output.name}.rank{rank}")
    name = f"{output.name}.lock" if rank == 0 else f"{output.name}.lock.rank{rank}"
    return OutputLock(part, output.with_name(name))


def run_inference(model, records: Sequence[Record], output: str | Path, batch_size: int = 8,
                  gen: GenerationConfig | None = None, num_workers: int = 2,
                  template: Literal["chat", "none"] = "chat", progress: bool = True,
                  extra_fields: Callable[[Record], dict[str, Any]] | None = None,
                  lock: bool = True, processor=None) -> InferenceSummary:
    """Answer every record not yet in ``output``; see the module docstring. Returns counts and timings.
    ``lock=False``: the caller already holds :func:`output_lock` (e.g. taken before loading the model).
    ``processor``: default, the one saved in the model's directory (``model.name_or_path``)."""
    processor = processor or processor_of(model)
    output = Path(output)
    rank, world = init_distributed()
    part = output if world == 1 else output.with_name(f"{output.name}.rank{rank}")
    with output_lock(output) if lock else contextlib.nullcontext():
        summary = _answer(model, processor, list(records), output, part, rank, world, batch_size,
                          gen or GenerationConfig(), num_workers, template, progress, extra_fields)
        if world > 1:
            _merge_parts(output, world, rank)  # rank 0 still holds <output>.lock while it merges
    return summary


def _answer(model, processor, records: list[Record], output: Path, part: Path, rank: int, world: int, batch_size: int,
            gen: GenerationConfig, num_workers: int, template: str, progress: bool,
            extra_fields: Callable[[Record], dict[str, Any]] | None) -> InferenceSummary:
    summary = InferenceSummary(total=len(records))
    todo = _remaining(records, output, part, rank, world, summary)
    start = time.perf_counter()
    writer = JsonlAppender(part)
    try:
        checker = RequestDataset(todo, processor, template=template)
        rejected = [(r.id, p) for r in todo if (p := request_problem(checker, r)) is not None]
        if rejected:  # before the DataLoader: a bad request is its error line, never a dead loader worker
            writer.write([{"id": rid, "error": err} for rid, err in rejected])
            summary.failed += len(rejected)
            summary.errors += rejected
            bad = {rid for rid, _ in rejected}
            todo = [r for r in todo if r.id not in bad]
        if todo:
            _generate_all(model, processor, todo, writer, summary, batch_size, gen, num_workers, template,
                          progress and rank == 0, extra_fields, start)
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _remaining(records: list[Record], output: Path, part: Path, rank: int, world: int,
               summary: InferenceSummary) -> list[Record]:
    """This rank's requests without a line yet; repairs a torn tail (the caller holds the lock) and reports bad
    lines and what earlier runs answered."""
    merged = scan_output(output)  # every rank sees the same merged output: the sharding agrees across ranks
    if part == output:
        repair(part, merged)
    summary.warnings += merged.warnings(output)
    ids = {r.id for r in records}
    summary.answered_before = len(ids & merged.answered)
    summary.failed_before = len(ids & merged.failed)
    todo = [r for r in records if r.id not in merged.done][rank::world]
    if part != output:
        own = scan_output(part)  # this rank's unmerged lines from a killed run
        repair(part, own)
        summary.warnings += own.warnings(part)
        summary.answered_before += len(ids & own.answered)
        summary.failed_before += len(ids & own.failed)
        todo = [r for r in todo if r.id not in own.done]
    summary.skipped = len(records) - len(todo) if world == 1 else len(merged.done & ids)
    for line in summary.warnings:
        print(f"WARNING: {line}", file=sys.stderr)
    return todo


def _generate_all(model, processor, todo: list[Record], writer: JsonlAppender, summary: InferenceSummary,
                  batch_size: int,
                  gen: GenerationConfig, num_workers: int, template: str, progress: bool,
                  extra_fields: Callable[[Record], dict[str, Any]] | None, start: float) -> None:
    from tqdm import tqdm

    from .data.collate import move_batch

    by_id = {r.id: r for r in todo}
    device = next(model.parameters()).device
    dtype = next(model.upm.parameters()).dtype
    dataset = RequestDataset(todo, processor, template=template)
    loader = DataLoader(dataset, batch_sampler=_length_batches(dataset, batch_size), num_workers=num_workers,
                        collate_fn=Collator(processor, padding_side="left", with_labels=False),
                        persistent_workers=False, prefetch_factor=2 if num_workers else None)
    # the bar only on a terminal (disable=None): logs and a one-line error stay free of bar fragments
    with tqdm(total=len(todo), disable=None if progress else True, unit="req", dynamic_ncols=True) as bar:
        for batch in loader:
            rows = [{"id": rid, "error": err} for rid, err in batch["failed"]]
            summary.failed += len(rows)
            summary.errors += batch["failed"]
            if batch["ids"]:
                t0 = time.perf_counter()
                out = generate(model, processor, move_batch(batch["inputs"], device, dtype), gen)
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


def _merge_parts(output: Path, world: int, rank: int) -> None:
    """Rank 0 (holding ``<output>.lock``) appends every rank's part to the output, skipping ids already there, once
    all ranks finished."""
    torch.distributed.barrier()
    if rank != 0:
        torch.distributed.barrier()
        return
    scan = scan_output(output)
    repair(output, scan)
    done = set(scan.done)
    writer = JsonlAppender(output)
    try:
        for r in range(world):
            part = output.with_name(f"{output.name}.rank{r}")
            if not part.exists():
                continue
            rows = []
            for _, row, _, _, _ in iter_rows(part):
                if row is not None and str(row["id"]) not in done:
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
        raise UsageError(f"unknown dtype {dtype!r}; choose auto, fp32, bf16 or fp16")
    return table[dtype]


def load_for_inference(model_dir: str | Path, device: str = "auto", dtype: str = "auto"):
    from .model import OneLLM

    dev = resolve_device(device)
    model = OneLLM.from_pretrained(model_dir, device=dev, dtype=resolve_dtype(dtype, dev))
    processor_of(model)  # fail now, not after the first batch, when the directory has no tokenizer
    return model


def processor_of(model):
    """A processor for a loaded model: the tokenizer saved in its directory (``model.name_or_path``) with the
    model's own config object (so switches set on the model, e.g. ``legacy_prompt``, hold for its prompts)."""
    from .data.text import load_tokenizer
    from .processing import OneLLMProcessor

    directory = model.name_or_path
    if not directory or not Path(directory).is_dir():
        raise UsageError("this model was not loaded from a directory: pass processor=OneLLMProcessor.for_config("
                         "model.config, tokenizer)")
    try:
        return OneLLMProcessor.for_config(model.config, load_tokenizer(directory))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{directory}: the model directory has no usable tokenizer files (tokenizer.model or "
                         f"tokenizer.json: {exc}); copy the tokenizer in or re-create it with `onellm init "
                         "--tokenizer`") from None


def infer_manifest(model_dir: str | Path, input_path: str | Path, output: str | Path, **kwargs: Any
                   ) -> InferenceSummary:
    """``onellm infer`` as a function: load the model, read the manifest, answer, return the summary."""
    device, dtype = kwargs.pop("device", "auto"), kwargs.pop("dtype", "auto")
    init_distributed()
    records = read_manifest(input_path)
    with output_lock(output):  # before the model loads: a second writer is refused at once, not minutes later
        model = load_for_inference(model_dir, device, dtype)
        return run_inference(model, records, output, lock=False, **kwargs)


def print_summary(summary: InferenceSummary, output: Path, stream=None) -> None:
    stream = stream or sys.stdout
    rate = (summary.done + summary.failed) / summary.seconds if summary.seconds else 0.0
    before = (f" ({summary.answered_before} answered, {summary.failed_before} failed in earlier runs)"
              if summary.skipped else "")
    print(f"{summary.total} requests: {summary.done} answered, {summary.failed} failed, "
          f"{summary.skipped} already in {output}{before}; {summary.seconds:.1f} s ({rate:.2f} req/s)", file=stream)
    for rid, err in summary.errors[:10]:
        print(f"  error {rid}: {err}", file=stream)
    if len(summary.errors) > 10:
        print(f"  ... and {len(summary.errors) - 10} more (see the 'error' lines in {output})", file=stream)
