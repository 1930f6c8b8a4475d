"""Manifest records -> webdataset tar shards (one folder per modality key), with webdataset's ``TarWriter``.

A record becomes the sample ``<n:09d>`` of its key's folder: its input files under the member names of
:mod:`.members` (bare ``.jpg``/``.mp4``/``.wav``/``.npy``... for one-input records that need no option, else
``<modality>.<ext>`` plus ``<option>.<ext>`` for path options such as ``rgb`` and ``timestamps``), ``.txt`` = the
(first) caption, ``.json`` = ``{"id", "caption" (string or list), "inputs": [other options, e.g. imu
start/end]}`` plus the record's extra keys. Samples keep the manifest's order, so shard sample ``i`` of a key is
the ``i``-th record of that key: a run from the shards with ``shuffle_buffer: all`` sees exactly the samples of
the same run from the manifest (tested).

Each shard is written to a temporary name, fsynced and renamed (a kill never leaves a torn ``.tar``), then
indexed; the folder's ``shards.json`` (written last, atomically) lists the shards with their sample counts and
sizes, the modality key and the source, and is what a recipe's ``shards:`` may name.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ...modalities import get as modality_definition
from ..manifest import Record
from .index import DESCRIPTOR, DESCRIPTOR_FORMAT, ShardIndex, index_locations
from .members import member_plan


def folder_name(modality_key: str) -> str:
    return modality_key.replace("+", "_")


def sample_members(record: Record, number: int) -> dict[str, bytes]:
    """The members of ``record`` (``__key__`` included); OSError when one of its files cannot be read."""
    plan = member_plan(record.modality_key)
    out: dict[str, Any] = {"__key__": f"{number:09d}"}
    options_out: list[dict[str, Any]] = []
    for ref, slot in zip(record.inputs, plan):
        spec = modality_definition(ref.modality).loader
        path = Path(ref.path)
        ext = path.suffix.lower().lstrip(".")
        out[ext if slot["bare"] else f"{slot['tag']}.{ext}"] = path.read_bytes()
        values = {}
        for option, value in ref.options.items():
            if option in spec.path_options:
                opt_path = Path(value)
                out[f"{slot['path_options'][option]}.{opt_path.suffix.lower().lstrip('.')}"] = opt_path.read_bytes()
            else:
                values[option] = value
        options_out.append(values)
    meta: dict[str, Any] = {"id": record.id}
    if record.caption is not None:
        meta["caption"] = record.caption
        out["txt"] = (record.caption[0] if isinstance(record.caption, list) else record.caption).encode("utf-8")
    if record.conversations is not None:
        meta["conversations"] = record.conversations
    if any(options_out):
        meta["inputs"] = options_out
    meta.update({k: v for k, v in record.extra.items() if k not in meta})
    out["json"] = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return out


@dataclass
class _KeyWriter:
    folder: Path
    key: str
    max_count: int
    max_bytes: float
    shards: list[dict[str, Any]] = field(default_factory=list)
    number: int = 0
    _tar: Any = None
    _tmp: Path | None = None
    _final: Path | None = None
    _count: int = 0
    _bytes: int = 0

    def write(self, members: dict[str, bytes]) -> None:
        from webdataset import TarWriter

        from ...io import temp_sibling

        if self._tar is not None and (self._count >= self.max_count or self._bytes >= self.max_bytes):
            self.close_shard()
        if self._tar is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._final = self.folder / f"{len(self.shards):06d}.tar"
            self._tmp = temp_sibling(self._final)
            # fixed mtime and owner: the same manifest gives byte-identical shards
            self._tar = TarWriter(str(self._tmp), encoder=False, compress=False, mtime=0.0, user="onellm", group="onellm",
                                  mode=0o644)
        self._bytes += self._tar.write(members)
        self._count += 1
        self.number += 1

    def close_shard(self) -> None:
        from ...io import finish_file, fsync_dir

        if self._tar is None:
            return
        self._tar.close()
        finish_file(self._tmp)
        os.replace(self._tmp, self._final)
        fsync_dir(self.folder)
        index = ShardIndex.scan(self._final)
        index.save(index_locations(self._final)[0])
        self.shards.append({"path": self._final.name, "samples": len(index), "bytes": self._final.stat().st_size})
        self._tar = None

    def abort(self) -> None:
        if self._tar is not None:
            try:
                self._tar.close()
            finally:
                if self._tmp is not None:
                    self._tmp.unlink(missing_ok=True)
                self._tar = None

    def finish(self, source: str | None) -> Path:
        from ...io import atomic_write_json

        self.close_shard()
        descriptor = {"format": DESCRIPTOR_FORMAT, "modality": self.key, "caption_key": "auto",
                      "samples": sum(s["samples"] for s in self.shards), "shards": self.shards, "source": source}
        path = self.folder / DESCRIPTOR
        atomic_write_json(path, descriptor)
        return path


@dataclass
class WriteReport:
    written: Counter = field(default_factory=Counter)  # modality key -> samples
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    descriptors: dict[str, Path] = field(default_factory=dict)  # modality key -> shards.json
    examples: list[str] = field(default_factory=list)  # the first few skipped samples with their full error

    def summary(self) -> str:
        kept = ", ".join(f"{k} {n}" for k, n in self.written.items()) or "nothing"
        text = f"wrote {sum(self.written.values())} samples ({kept})"
        if self.skipped:
            text += f", skipped {sum(self.skipped.values())}: " + ", ".join(
                f"{r} ({n})" for r, n in self.skipped.most_common())
        return text


def write_shards(records: Iterable[Record | str], out: str | Path, *, max_count: int = 10_000,
                 max_bytes: float = 1e9, check: Callable[[Record], tuple[str, str] | None] | None = None,
                 source: str | None = None, keys: Iterable[str] | None = None) -> WriteReport:
    """Write ``records`` (a string item is a skip reason, as data_prep's items) as shards under
    ``out/<modality key>/``; ``check(record)`` returns (reason, full error) of a record that is unusable
    (``--verify``), or None.
    ``keys``: write only records of these modality keys."""
    out = Path(out)
    wanted = set(keys) if keys is not None else None
    writers: dict[str, _KeyWriter] = {}
    report = WriteReport()

    def skip(reason: str, detail: str) -> None:
        report.skipped[reason] += 1
        if len(report.examples) < 10:
            report.examples.append(detail)

    try:
        for record in records:
            if isinstance(record, str):
                report.skipped[record] += 1
                continue
            key = record.modality_key
            if wanted is not None and key not in wanted:
                continue
            if key == "text":
                skip("no inputs (text-only record)", record.id)
                continue
            found = check(record) if check is not None else None
            if found:
                skip(found[0], f"{record.id}: {found[1]}")
                continue
            writer = writers.get(key)
            if writer is None:
                writer = writers[key] = _KeyWriter(out / folder_name(key), key, max_count, max_bytes)
            try:
                members = sample_members(record, writer.number)
            except OSError as exc:
                skip("unreadable input file", f"{record.id}: {exc}")
                continue
            writer.write(members)
            report.written[key] += 1
        for key, writer in writers.items():
            report.descriptors[key] = writer.finish(source)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    return report
