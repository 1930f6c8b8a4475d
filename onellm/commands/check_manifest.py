"""``onellm check-manifest MANIFEST [...] [--media]``: find what would fail in a long run before it starts.

1. Every line is validated (``onellm.data.manifest``): each bad line is printed with its number.
2. Every input file (and path option: a map's ``rgb``, IMU ``timestamps``) is checked to exist with a supported
   extension; with ``--media`` every input is decoded by the loaders the model uses (``load_modality``, in a
   DataLoader with workers, at the geometry of ``--model`` or ``--preset``).
3. Failures are summarised by reason (count per reason, the first few examples of each); ``--failures FILE``
   writes every one as JSONL.

Exit status: 0 clean, 1 some inputs fail, 2 a manifest is missing or has bad lines.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL manifest(s) to check")
    p.add_argument("--media", action="store_true",
                   help="decode every input with the model's loaders (slow: as long as an epoch of data loading); "
                        "without it only existence and extensions are checked")
    p.add_argument("--num-workers", type=int, default=None,
                   help="--media: DataLoader workers decoding inputs (default: the usable CPU cores, at most 8)")
    p.add_argument("--model", default=None,
                   help="--media: decode at this model directory's input geometry (default: --preset's)")
    p.add_argument("--preset", default="onellm-7b", choices=PRESETS,
                   help="--media: decode at this preset's input geometry (image size, audio frames, fMRI voxels ...)")
    p.add_argument("--examples", type=int, default=3, help="examples shown per failure reason")
    p.add_argument("--failures", default=None, metavar="FILE",
                   help="write every failure as JSONL (line, id, modality, path, reason, error); default: none")


@dataclass
class Failure:
    manifest: str
    line: int
    id: str
    modality: str
    path: str
    reason: str  # the problem with its file names and numbers taken out: failures of one kind share it
    error: str  # the full message (names the file)

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    manifest: str
    records: int = 0
    inputs: Counter = field(default_factory=Counter)  # modality -> inputs
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0


def reason_of(modality: str, problem: str) -> str:
    """``"image: cannot decode image"`` for ``"cannot decode image: cannot identify image file '/d/x.png'"``: the
    problem up to its first ``": "``, with paths and numbers replaced, so equal failures count together."""
    head = problem.split(": ", 1)[0]
    head = re.sub(r"\S*[/\\]\S*", "<file>", head)
    head = re.sub(r"(?<![\w.])[-+]?\d+(\.\d+)?(e[-+]?\d+)?", "N", head)
    return f"{modality}: {head.strip()}"


def _items(records) -> list[tuple[int, int]]:
    return [(r, k) for r, rec in enumerate(records) for k in range(len(rec.inputs))]


def _stat_problem(ref) -> str | None:
    """Without decoding: a supported extension, the file and every path option there."""
    from ..modalities import get

    spec = get(ref.modality).loader
    path = Path(ref.path)
    if path.suffix.lower() not in spec.extensions:
        return f"unsupported file extension {path.suffix!r} for {ref.modality} inputs; supported: " \
               f"{', '.join(spec.extensions)}"
    if not path.is_file():
        return "file not found" if not path.exists() else "not a regular file"
    for option in spec.path_options:
        value = ref.options.get(option)
        if value is not None and not Path(value).is_file():
            return f"{option} file not found: {value}"
    return None


class _DecodeDataset:
    """Item k decodes one input; returns (k, None) or (k, (problem, full message)). Nothing is kept in memory."""

    def __init__(self, records, items, config):
        self.records, self.items, self.config = records, items, config

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int):
        from ..data.errors import InputError
        from ..modalities.loading import load_modality

        r, i = self.items[k]
        ref = self.records[r].inputs[i]
        try:
            load_modality(ref.modality, ref.as_source(), train=False, config=self.config)
        except InputError as exc:
            return k, (exc.problem, str(exc))
        except Exception as exc:  # a loader bug: still one failure of this input, not the end of the check
            return k, (f"unexpected {type(exc).__name__}", f"{ref.path}: unexpected {type(exc).__name__}: {exc}")
        return k, None


def _usable_cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _geometry(args: argparse.Namespace):
    if args.model:
        from ..checkpoint import read_config

        return read_config(args.model)
    from ..config import OneLLMConfig

    return OneLLMConfig.preset(args.preset)


def check(manifest: str | Path, media: bool = False, num_workers: int = 4, config=None,
          progress: bool | None = None) -> Report:
    """Validate ``manifest`` and check (``media``: decode) every input; never raises for bad lines or inputs."""
    from ..data.manifest import ManifestError, read_manifest

    start = time.perf_counter()
    report = Report(str(manifest))
    try:
        records = read_manifest(manifest)
    except ManifestError as exc:
        report.bad_lines = list(exc.problems)
        return report
    report.records = len(records)
    report.inputs = Counter(ref.modality for rec in records for ref in rec.inputs)
    items = _items(records)
    problems: dict[int, tuple[str, str]] = {}
    if not media:
        for k, (r, i) in enumerate(items):
            ref = records[r].inputs[i]
            problem = _stat_problem(ref)
            if problem is not None:
                problems[k] = (problem, f"{ref.path}: {problem}")
    elif items:
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        loader = DataLoader(_DecodeDataset(records, items, config), batch_size=8, num_workers=num_workers,
                            collate_fn=list, prefetch_factor=4 if num_workers else None)
        with tqdm(total=len(items), unit="input", disable=None if progress is None else not progress,
                  dynamic_ncols=True, leave=False, file=sys.stderr) as bar:
            for batch in loader:
                for k, problem in batch:
                    if problem is not None:
                        problems[k] = problem
                bar.update(len(batch))
    for k in sorted(problems):
        r, i = items[k]
        rec, ref = records[r], records[r].inputs[i]
        problem, message = problems[k]
        report.failures.append(Failure(str(manifest), rec.line, rec.id, ref.modality, ref.path,
                                       reason_of(ref.modality, problem), message))
    report.seconds = time.perf_counter() - start
    return report


def format_report(report: Report, media: bool, examples: int = 3) -> list[str]:
    if report.bad_lines:
        n = len(report.bad_lines)
        return [f"{report.manifest}: {n} bad line{'s' if n != 1 else ''}"] + [
            f"  line {line}: {problem}" for line, problem in report.bad_lines]
    total = sum(report.inputs.values())
    kinds = ", ".join(f"{m} {n}" for m, n in sorted(report.inputs.items()))
    lines = [f"{report.manifest}: {report.records} records, every line valid; {total} inputs"
             + (f" ({kinds})" if kinds else "")]
    verb = "decoded" if media else "checked (exist, supported extension; --media decodes them)"
    failed = len(report.failures)
    lines.append(f"  {verb}: {total - failed} ok, {failed} failed ({report.seconds:.1f} s)")
    by_reason: dict[str, list[Failure]] = {}
    for f in report.failures:
        by_reason.setdefault(f.reason, []).append(f)
    for reason, group in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append(f"  {len(group):6d} x {reason}")
        for f in group[:examples]:
            lines.append(f"           line {f.line} (id {f.id}): {f.error}")
        if len(group) > examples:
            lines.append(f"           ... and {len(group) - examples} more")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError

    if (args.num_workers is not None and args.num_workers < 0) or args.examples < 0:
        raise UsageError("--num-workers and --examples must be >= 0")
    workers = args.num_workers if args.num_workers is not None else min(8, _usable_cpus())
    for m in args.manifests:  # every missing manifest named at once, before any decoding
        if not Path(m).is_file():
            raise FileNotFoundError(f"{m}: manifest not found" if not Path(m).exists() else f"{m}: not a file")
    config = _geometry(args) if args.media else None
    reports = [check(m, args.media, workers, config) for m in args.manifests]
    for report in reports:
        for line in format_report(report, args.media, args.examples):
            print(line)
    if args.failures:
        from ..io import atomic_write_jsonl

        rows = [f.as_row() for report in reports for f in report.failures]
        atomic_write_jsonl(args.failures, rows)
        print(f"wrote {len(rows)} failure(s) to {args.failures}")
    if any(r.bad_lines for r in reports):
        return 2
    return 1 if any(r.failures for r in reports) else 0
