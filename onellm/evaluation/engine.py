"""``onellm eval``: find benchmark definitions, read their data, answer through ``run_inference``, score, tabulate.

* Definitions are files ``<benchmarks dir>/<name>.py`` defining ``BENCHMARK`` (a :class:`Benchmark`), loaded by
  path: adding a benchmark is adding a file. The folder is ``eval/benchmarks`` of the source tree, or
  ``$ONELLM_BENCHMARKS`` / ``--benchmarks-dir``; ``all`` runs the list in ``<that folder>/../all.yaml``.
* Every selected benchmark's data is read before the model loads, so a missing file fails at once. With ``all``
  a benchmark whose data is missing becomes a "skipped" row and the others run.
* Predictions go to ``OUTPUT/<name>/predictions.jsonl`` (resumable: answered ids are skipped), the settings they
  were made with to ``settings.json`` (a re-run with other settings is refused rather than mixing answers),
  scores to ``metrics.json``; ``OUTPUT/results.md`` / ``results.json`` hold one row per benchmark.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import onellm

from ..data.manifest import Record
from ..generation import GenerationConfig
from .benchmark import Benchmark, DataNotFound

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


def generation_for(bench: Benchmark, s: EvalSettings) -> GenerationConfig:
    overrides = {"max_new_tokens": s.max_new_tokens, "temperature": s.temperature, "top_p": s.top_p}
    return dataclasses.replace(bench.gen, **{k: v for k, v in overrides.items() if v is not None})


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


def read_predictions(path: Path, ids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({id: answer}, {id: error}) for ``ids`` from a predictions JSONL (bad lines are ignored)."""
    answers: dict[str, str] = {}
    errors: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                rid = str(row["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            if rid in ids:
                (errors if "error" in row else answers)[rid] = row.get("error") or row.get("answer") or ""
    return answers, errors


def write_text(path: Path, text: str) -> None:
    """Write atomically (temp file + rename): a kill never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


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
        write_json(path, settings)


def evaluate(model: Any, selection: Sequence[tuple[str, dict]], benchmarks: dict[str, Benchmark],
             settings: EvalSettings, skip_missing: bool = False, device: str = "auto", dtype: str = "auto",
             model_id: str | None = None) -> list[dict[str, Any]]:
    """Run the selected benchmarks; ``model`` is a model directory or a loaded ``OneLLM`` (loaded at most once,
    and only when some request is unanswered). Returns the result rows (rank 0; other ranks get [])."""
    import torch

    from ..inference import init_distributed, load_for_inference, read_done_ids, run_inference

    rank, _ = init_distributed()
    if isinstance(model, (str, Path)):
        if not Path(model).is_dir():
            raise EvalError(f"model directory not found: {model}")
        model_id = model_id or str(Path(model).resolve())
    single = len(selection) == 1
    plans: list[tuple[Benchmark, Path, list[Record] | None, str, str | None]] = []
    for name, options in selection:  # read everything first: data problems show before the model loads
        bench = benchmarks[name]
        root = data_root(bench, Path(settings.data), single)
        template = settings.template or bench.template
        try:
            records = prepare(bench, root, template, options, settings.limit)
        except DataNotFound as exc:
            if not skip_missing:
                raise EvalError(f"{exc}; see {bench.doc_link}") from None
            plans.append((bench, root, None, template, f"data not found: {exc.path}"))
            continue
        reason = None if records else f"no caption requests with --template {template}"
        plans.append((bench, root, records, template, reason))
    loaded = None if isinstance(model, (str, Path)) else model
    rows = []
    for bench, root, records, template, reason in plans:
        if reason:
            rows.append(_row(bench, None, skipped=reason))
            continue
        folder = Path(settings.output) / bench.name
        preds_path = folder / "predictions.jsonl"
        gen = generation_for(bench, settings)
        run = {"model": model_id, "template": template, "generation": dataclasses.asdict(gen)}
        _check_settings(folder, run, write=rank == 0)
        ids = {r.id for r in records}
        if ids - read_done_ids(preds_path):
            if loaded is None:
                loaded = load_for_inference(model, device, dtype)
            torch.manual_seed(settings.seed)  # per benchmark: results do not depend on which ran before
            if rank == 0:
                print(f"== {bench.name}: {len(records)} requests -> {preds_path}", flush=True)
            run_inference(loaded, records, preds_path, batch_size=settings.batch_size, gen=gen,
                          num_workers=settings.num_workers, template=template, progress=settings.progress,
                          extra_fields=lambda r: {"gt": r.answer} if r.answer is not None else {})
        if rank != 0:
            continue
        answers, errors = read_predictions(preds_path, ids)
        metrics = {k: float(v) for k, v in bench.score(answers, records).items()}
        result = {"benchmark": bench.name, "modality": bench.modality, "description": bench.description,
                  "data": str(root), "metrics": metrics, "primary_metric": bench.primary_metric,
                  "paper": dict(bench.paper) if bench.paper else None, "n": len(answers), "n_errors": len(errors),
                  "n_total": len(records), "limit": settings.limit, **run}
        write_json(folder / "metrics.json", result)
        rows.append(_row(bench, result))
    if rank != 0:
        return []
    out = Path(settings.output)
    write_json(out / "results.json", rows)
    write_text(out / "results.md", format_table(rows))
    return rows


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


def _row(bench: Benchmark, result: dict | None, skipped: str | None = None) -> dict[str, Any]:
    row = {"benchmark": bench.name, "modality": bench.modality, "table_metrics": list(bench.shown_metrics),
           "paper": dict(bench.paper) if bench.paper else None, "status": "skipped" if skipped else "ok"}
    if skipped:
        return {**row, "reason": skipped, "doc": bench.doc_link}
    return {**row, "metrics": result["metrics"], "n": result["n"], "n_errors": result["n_errors"],
            "n_total": result["n_total"]}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: benchmark | modality | metric | ours | paper (released OneLLM-7B) | n."""
    lines = ["| benchmark | modality | metric | ours | paper (OneLLM-7B) | n |", "|---|---|---|---|---|---|"]
    for r in rows:
        names = r["table_metrics"]
        paper = " / ".join(_fmt((r["paper"] or {}).get(m)) for m in names)
        if r["status"] == "skipped":
            ours, n = f"skipped ({r['reason']})", "–"
        else:
            ours = " / ".join(_fmt(r["metrics"].get(m)) for m in names)
            n = str(r["n"])
            if r["n_errors"]:
                n += f" (+{r['n_errors']} errors)"
            if r["n"] + r["n_errors"] < r["n_total"]:
                n += f" of {r['n_total']}"
        lines.append(f"| {r['benchmark']} | {r['modality']} | {' / '.join(names)} | {ours} | {paper} | {n} |")
    return "\n".join(lines) + "\n"


def list_benchmarks(benchmarks: dict[str, Benchmark]) -> str:
    """A markdown listing of the available definitions (``onellm eval --list``)."""
    lines = ["| benchmark | modality | data sub-folder | metric | paper | docs |", "|---|---|---|---|---|---|"]
    for b in benchmarks.values():
        paper = " / ".join(_fmt((b.paper or {}).get(m)) for m in b.shown_metrics)
        lines.append(f"| {b.name} | {b.modality} | {b.data_dir} | {' / '.join(b.shown_metrics)} | {paper} | "
                     f"{b.doc_link} |")
    return "\n".join(lines) + "\n"
