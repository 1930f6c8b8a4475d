"""``onellm eval``: find benchmark definitions, read their data, answer through ``run_inference``, score, tabulate.

* Definitions are files ``<benchmarks dir>/<name>.py`` defining ``BENCHMARK`` (a :class:`Benchmark`), loaded by
  path: adding a benchmark is adding a file. The folder is ``eval/benchmarks`` of the source tree, or
  ``$ONELLM_BENCHMARKS`` / ``--benchmarks-dir``; ``all`` runs the list in ``<that folder>/../all.yaml``.
* Every selected benchmark's data is read before the model loads, so a missing file fails at once. With ``all``
  a benchmark whose data is missing becomes a "skipped" row and the others run.
* Predictions go to ``OUTPUT/<name>/predictions.jsonl`` (``OUTPUT/<name>-<split>/`` for a split other than the
  default; resumable: answered ids are skipped), the settings they were made with to ``settings.json`` (a re-run
  with other settings is refused rather than mixing answers), scores to ``metrics.json``. A split scored by a
  server (VQAv2 test-dev, NoCaps test) or an external grader (MM-Vet) gets the file to upload instead of scores.
* ``OUTPUT/results.md`` / ``results.json``: one row per benchmark and split run into that folder, this run's
  replacing an earlier run's (``onellm.evaluation.report``).
* ``OUTPUT`` defaults to ``<run>/eval`` for a training run's ``<run>/model``, else ``runs/eval/<model folder>-<hash
  of its full path>``: two models never share a folder, and nothing lands in the source tree.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import onellm

from ..data.manifest import Record
from ..generation import GenerationConfig
from ..io import atomic_write_json, atomic_write_text
from ..outputs import iter_rows
from .benchmark import Benchmark, DataNotFound
from .report import ROW_KEYS, format_table, merge_rows, result_row

ENV_VAR = "ONELLM_BENCHMARKS"


class EvalError(RuntimeError):
    """A usage or data problem to report to the user (no traceback)."""


def benchmarks_dir(override: str | Path | None = None) -> Path:
    """``override``, else ``$ONELLM_BENCHMARKS``, else ``eval/benchmarks`` next to the ``onellm`` package."""
    chosen = override or os.environ.get(ENV_VAR)
    path = Path(chosen) if chosen else Path(onellm.__file__).resolve().parents[1] / "eval" / "benchmarks"
    if not path.is_dir():
        raise EvalError(f"benchmark definitions folder not found: {path} (set --benchmarks-dir or ${ENV_VAR})")
    return path


# What a training run writes next to its model (onellm.training.trainer: recipe.json at the start,
# train_summary.json at the end); named here rather than imported, so evaluation does not import the trainer.
RUN_MARKERS = ("recipe.json", "train_summary.json")


def default_output(model: str | Path) -> Path:
    """Where ``onellm eval`` writes when ``--output`` is not given: ``<run>/eval`` for a training run's
    ``<run>/model`` (every stage's model folder is called ``model``, so the model folder's name cannot tell two
    stages apart), else ``runs/eval/<model folder>-<8 hex of the full path's sha256>`` (``runs/`` is git-ignored)."""
    path = Path(model).resolve()
    if any((path.parent / m).is_file() for m in RUN_MARKERS):
        return path.parent / "eval"
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
    return Path("runs") / "eval" / f"{path.name}-{digest}"


def load_benchmark(path: Path) -> Benchmark:
    """Import one definition file by path and return its ``BENCHMARK``."""
    spec = importlib.util.spec_from_file_location(f"onellm_benchmarks.{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bench = getattr(module, "BENCHMARK", None)
    if not isinstance(bench, Benchmark):
        raise EvalError(f"{path}: defines no BENCHMARK = Benchmark(...)")
    if bench.name != path.stem:
        raise EvalError(f"{path}: BENCHMARK.name is {bench.name!r}; it must equal the file name {path.stem!r}")
    return bench


def load_benchmarks(directory: Path) -> dict[str, Benchmark]:
    return {p.stem: load_benchmark(p) for p in sorted(directory.glob("*.py")) if not p.name.startswith("_")}


def select(spec: str, directory: Path, available: dict[str, Benchmark]) -> tuple[list[tuple[str, dict]], bool]:
    """``"all"`` or ``"a,b"`` -> ([(name, read options)], is_all)."""
    if spec.strip() == "all":
        listing = directory.parent / "all.yaml"
        if not listing.is_file():
            return [(n, {}) for n in available], True
        import yaml

        entries = (yaml.safe_load(listing.read_text(encoding="utf-8")) or {}).get("benchmarks") or []
        chosen = [(e, {}) if isinstance(e, str) else (e["name"], dict(e.get("options") or {})) for e in entries]
        is_all = True
    else:
        chosen, is_all = [(n.strip(), {}) for n in spec.split(",") if n.strip()], False
    unknown = [n for n, _ in chosen if n not in available]
    if unknown or not chosen:
        raise EvalError(f"unknown benchmark(s) {unknown or spec!r}; available: {', '.join(available)} or all")
    return chosen, is_all


@dataclass
class EvalSettings:
    output: Path
    data: Path
    limit: int | None = None
    batch_size: int = 8
    num_workers: int = 2
    template: str | None = None  # None: the definition's
    max_new_tokens: int | None = None  # None: the definition's (released scripts: 128)
    temperature: float | None = None  # 0.1
    top_p: float | None = None  # 0.75
    seed: int = 0
    progress: bool = True
    split: str | None = None  # None: each benchmark's default (or all.yaml's option)
    engine: str = "hf"  # run_inference's engine: hf (the loaded model) or vllm (onellm.vllm, docs/vllm.md)
    engine_options: dict[str, Any] | None = None  # the vllm engine's (onellm.inference.run_inference)


def generation_for(bench: Benchmark, s: EvalSettings) -> GenerationConfig:
    overrides = {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p}
    return dataclasses.replace(bench.gen, **{k: v for k, v in overrides.items() if v is not None})


def resolve_split(bench: Benchmark, options: dict, override: str | None) -> tuple[str, dict]:
    """(split, read options): ``override`` (``--split``), else the listing's ``split`` option, else the default.
    ``read`` is given ``split=`` only when the benchmark has several; an unknown split is an EvalError."""
    options = dict(options)
    split = override or options.pop("split", None) or bench.default_split
    if bench.splits and split not in bench.splits:
        raise EvalError(f"{bench.name} has no split {split!r}; its splits: {', '.join(bench.splits)}")
    if not bench.splits and override:
        raise EvalError(f"{bench.name} has no --split choice")
    if len(bench.splits) > 1:
        options["split"] = split
    return split, options


def folder_name(bench: Benchmark, split: str) -> str:
    """``<name>`` for the default split, ``<name>-<split>`` for another (their predictions never mix)."""
    return bench.name if split == bench.default_split else f"{bench.name}-{split}"


def data_root(bench: Benchmark, data: Path, single: bool) -> Path:
    """One benchmark: ``data`` itself (or ``data/<data_dir>`` when that exists); several: ``data/<data_dir>``."""
    sub = data / bench.data_dir
    return data if single and not sub.is_dir() else sub


def prepare(bench: Benchmark, root: Path, template: str, options: dict, limit: int | None) -> list[Record]:
    """The benchmark's requests: read, cut to ``limit``, adapted to the template; DataNotFound names the doc."""
    try:
        if not root.is_dir():
            raise DataNotFound(root, "data folder")
        records = bench.read(root, **options)
        if template == "none":  # raw continuation: only captions make sense, and from an empty prompt
            records = [dataclasses.replace(r, prompt="") for r in records if r.extra.get("task") == "caption"]
        if limit is not None:
            records = bench.select(records, limit) if bench.select else records[:limit]
        _check_first_inputs(records)
    except DataNotFound as exc:
        raise DataNotFound(exc.path, f"{bench.name}: {exc.what}") from None
    return records


def _check_first_inputs(records: Sequence[Record]) -> None:
    """Media folders not downloaded would turn every item into an error line: check the first item's files."""
    for ref in records[0].inputs if records else []:
        for p in (ref.path, *(ref.options[k] for k in ("rgb", "timestamps") if k in ref.options)):
            if not Path(p).exists():
                raise DataNotFound(p, f"{ref.modality} file of the first item (media not downloaded?)")


def read_predictions(path: Path, ids: set[str], log=None) -> tuple[dict[str, str], dict[str, str]]:
    """({id: answer}, {id: error}) for ``ids`` from a predictions JSONL.

    A bad line anywhere (not JSON, not an object -- ``null``, ``[1, 2]`` --, no ``id``, an answer that is not a
    string, a torn last line) is skipped and reported once, with its line number, through ``log`` (default:
    stderr); the lines after it still count. An id with an answer on any line counts as answered."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    answers: dict[str, str] = {}
    errors: dict[str, str] = {}
    if not path.exists():
        return answers, errors
    for n, row, problem, _, _ in iter_rows(path):
        if row is not None and "answer" in row and not isinstance(row["answer"], str):
            problem, row = f"'answer' is {type(row['answer']).__name__}, not a string", None
        if row is None:
            log(f"onellm eval: warning: {path} line {n}: {problem}; skipped")
            continue
        rid = str(row["id"])
        if rid not in ids:
            continue
        if "answer" in row:
            answers[rid] = row["answer"]
        elif rid not in answers:
            errors[rid] = str(row.get("error") or "")
    return answers, {k: v for k, v in errors.items() if k not in answers}


def _check_settings(folder: Path, settings: dict[str, Any], write: bool = True) -> None:
    """Refuse to append answers made with other settings to an existing predictions file (every rank checks,
    so all of them stop; ``write``: record the settings)."""
    path, preds = folder / "settings.json", folder / "predictions.jsonl"
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they read back
    if preds.exists() and preds.stat().st_size and path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
            raise EvalError(f"{preds} was made with other settings {diff} (old, new); use another --output "
                            "or delete that folder")
    if write:
        atomic_write_json(path, settings)


def evaluate(model: Any, selection: Sequence[tuple[str, dict]], benchmarks: dict[str, Benchmark],
             settings: EvalSettings, skip_missing: bool = False, device: str = "auto", dtype: str = "auto",
             model_id: str | None = None) -> list[dict[str, Any]]:
    """Run the selected benchmarks; ``model`` is a model directory or a loaded ``OneLLM`` (loaded at most once,
    and only when some request is unanswered). Returns the result rows (rank 0; other ranks get [])."""
    import torch

    from ..inference import check_engine, init_distributed, load_for_inference, read_done_ids, run_inference

    check_engine(settings.engine)  # without vLLM, --engine vllm is a one-line error before anything is read
    rank, _ = init_distributed("gloo" if settings.engine == "vllm" else None)
    if isinstance(model, (str, Path)):
        if not Path(model).is_dir():
            raise EvalError(f"model directory not found: {model}")
        model_id = model_id or str(Path(model).resolve())
    single = len(selection) == 1
    plans: list[tuple[Benchmark, Path, list[Record] | None, str, str, str | None]] = []
    for name, options in selection:  # read everything first: data problems show before the model loads
        bench = benchmarks[name]
        root = data_root(bench, Path(settings.data), single)
        template = settings.template or bench.template
        try:
            split, options = resolve_split(bench, options, settings.split)
        except EvalError as exc:
            if not skip_missing:
                raise
            plans.append((bench, root, None, template, bench.default_split, str(exc)))
            continue
        try:
            records = prepare(bench, root, template, options, settings.limit)
        except DataNotFound as exc:
            if not skip_missing:
                raise EvalError(f"{exc}; see {bench.doc_link}") from None
            plans.append((bench, root, None, template, split, f"data not found: {exc.path}"))
            continue
        reason = None if records else f"no caption requests with --template {template}"
        plans.append((bench, root, records, template, split, reason))
    loaded = None if isinstance(model, (str, Path)) else model
    engine_options = {"seed": settings.seed, **dict(settings.engine_options or {})}
    longest = max([generation_for(b, settings).max_new_tokens for b, _, r, _, _, why in plans if not why] or [0])
    rows = []
    for bench, root, records, template, split, reason in plans:
        if reason:
            rows.append(result_row(bench, split, None, skipped=reason))
            continue
        folder = Path(settings.output) / folder_name(bench, split)
        preds_path = folder / "predictions.jsonl"
        gen = generation_for(bench, settings)
        run = {"model": model_id, "template": template, "generation": dataclasses.asdict(gen)}
        _check_settings(folder, run, write=rank == 0)
        ids = {r.id for r in records}
        if ids - read_done_ids(preds_path):
            if loaded is None:
                loaded = _load(model, settings, engine_options, device, dtype, longest, load_for_inference)
            torch.manual_seed(settings.seed)  # per benchmark: results do not depend on which ran before
            if rank == 0:
                print(f"== {bench.name}: {len(records)} requests -> {preds_path}", flush=True)
            run_inference(loaded, records, preds_path, batch_size=settings.batch_size, gen=gen,
                          num_workers=settings.num_workers, template=template, progress=settings.progress,
                          extra_fields=lambda r: {"gt": r.answer} if r.answer is not None else {},
                          engine=settings.engine, engine_options=engine_options)
        if rank != 0:
            continue
        answers, errors = read_predictions(preds_path, ids)
        remote = bench.is_remote(split)  # no public answers / external grader: nothing to score here
        metrics = {} if remote else {k: float(v) for k, v in bench.score(answers, records).items()}
        result = {"benchmark": bench.name, "split": split, "modality": bench.modality,
                  "description": bench.description, "data": str(root), "metrics": metrics,
                  "primary_metric": bench.primary_metric, "paper": dict(bench.paper) if bench.paper else None,
                  "paper_split": bench.paper_split, "n": len(answers), "n_errors": len(errors),
                  "n_total": len(records), "limit": settings.limit, **run}
        submission = bench.submit(answers, root, split) if bench.submit else None
        if submission is not None:
            path = folder / submission.filename
            atomic_write_json(path, submission.payload, indent=None)  # test-std: 447,793 entries
            result["submission"] = {"file": str(path), "upload": submission.upload,
                                    "n_answered": submission.n_answered, "n_total": submission.n_total}
        atomic_write_json(folder / "metrics.json", result)
        rows.append(result_row(bench, split, result))
    if rank != 0:
        return []
    out = Path(settings.output)
    table = merge_rows(_read_rows(out / "results.json"), rows)  # earlier runs' other benchmarks / splits stay
    atomic_write_json(out / "results.json", table)
    atomic_write_text(out / "results.md", format_table(table))
    return rows


def _load(model: str | Path, settings: EvalSettings, engine_options: dict[str, Any], device: str, dtype: str,
          longest: int, load_for_inference):
    """The model (hf) or the engine (vllm, built once for every benchmark of the run, with room for the longest
    answer any of them asks for)."""
    if settings.engine != "vllm":
        return load_for_inference(model, device, dtype)
    from ..inference import vllm_engine

    if device not in ("auto", "cpu", "cuda"):
        raise EvalError(f"--device {device}: the vLLM engine uses its platform's devices (CUDA_VISIBLE_DEVICES)")
    return vllm_engine(model, None, dtype=dtype, max_new_tokens=longest, **engine_options)


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of an earlier results.json (none when missing or unreadable: it is rebuilt, never trusted)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and ROW_KEYS <= set(r)]  # rows of an older layout are dropped


def run_benchmarks(model: Any, benchmark: str, data: str | Path, output: str | Path,
                   definitions: str | Path | None = None, device: str = "auto", dtype: str = "auto",
                   **settings: Any) -> list[dict[str, Any]]:
    """``onellm eval`` as a function: ``benchmark`` = "name[,name]" or "all"; ``settings``: the
    :class:`EvalSettings` fields (limit, batch_size, template, max_new_tokens, ...). Returns the result rows."""
    directory = benchmarks_dir(definitions)
    available = load_benchmarks(directory)
    selection, is_all = select(benchmark, directory, available)
    return evaluate(model, selection, available, EvalSettings(output=Path(output), data=Path(data), **settings),
                    skip_missing=is_all, device=device, dtype=dtype)
