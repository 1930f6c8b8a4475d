"""Shard sets: which tar files a dataset entry names, how many samples each holds, where each member lies.

A shard is an uncompressed webdataset tar as img2dataset / video2dataset / ``data_prep/make_shards.py`` write
them: members ``<key>.<ext>`` (``<ext>`` is everything after the first dot of the base name, webdataset's
``base_plus_ext``), the members of one sample adjacent. Training reads members by offset (random access), so every
shard gets an index once: the byte offset and size of each member, grouped into samples. It is built from the tar
headers with the standard ``tarfile`` module (headers only, no member data is read) and kept as a sidecar
``<shard>.idx.npz`` (numpy arrays, no pickle) next to the shard, or in ``$ONELLM_INDEX_CACHE`` (default
``~/.cache/onellm/index``) when the shard's folder is read-only; it is rebuilt when the shard's size or mtime
changes. ``python data_prep/make_shards.py --index SHARDS`` builds them ahead of a run, in parallel.

A damaged tar (truncated, a corrupt header) keeps the samples before the damage; what was lost is reported in
``ShardIndex.problems``. A sample with two members of one extension is kept with the first and reported.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

INDEX_SUFFIX = ".idx.npz"
INDEX_VERSION = 1
DESCRIPTOR = "shards.json"  # what make_shards.py writes beside its shards: modality, shard list, sample counts
DESCRIPTOR_FORMAT = "onellm-shards-v1"


class ShardError(ValueError):
    """A shard set cannot be used (no shards, a compressed or unreadable tar, a bad descriptor)."""


def split_member(name: str) -> tuple[str | None, str | None]:
    """(sample key, extension) of a member name, webdataset's rule (the key ends at the first dot of the base
    name); the extension in lower case."""
    from webdataset.tariterators import base_plus_ext

    key, ext = base_plus_ext(name)
    return (key, ext.lower()) if key is not None else (None, None)


def _is_meta(name: str) -> bool:  # webdataset skips "__...__" members (its own metadata)
    base = name.rsplit("/", 1)[-1]
    return base.startswith("__") and (base.endswith("__") or "__." in base)


@dataclass
class ShardIndex:
    """Members of one shard, sample by sample (arrays; no pickle)."""

    path: Path
    keys: np.ndarray  # (S,) str: sample keys in tar order
    first: np.ndarray  # (S,) int64: row of each sample's first member
    count: np.ndarray  # (S,) int64: members per sample
    exts: np.ndarray  # (M,) str: member extensions ("jpg", "depth.png", "json")
    offsets: np.ndarray  # (M,) int64: byte offset of each member's data
    sizes: np.ndarray  # (M,) int64: bytes of each member
    problems: list[str] = field(default_factory=list)  # damage found while indexing (the shard is still used)

    def __len__(self) -> int:
        return len(self.keys)

    def members(self, i: int) -> dict[str, tuple[int, int]]:
        """{extension: (offset, size)} of sample ``i``."""
        lo, n = int(self.first[i]), int(self.count[i])
        return {str(self.exts[r]): (int(self.offsets[r]), int(self.sizes[r])) for r in range(lo, lo + n)}

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def scan(cls, path: str | Path) -> "ShardIndex":
        """Index a tar from its headers (``tarfile``, seekable mode: member data is skipped, not read)."""
        path = Path(path)
        size = path.stat().st_size
        keys: list[str] = []
        first: list[int] = []
        exts: list[str] = []
        offsets: list[int] = []
        sizes: list[int] = []
        problems: list[str] = []
        current = None
        seen: set[str] = set()
        try:
            tar = tarfile.open(path, "r:")  # "r:" refuses compressed tars: they cannot be read by offset
        except tarfile.ReadError as exc:
            raise ShardError(f"{path}: not an uncompressed tar ({exc}); shards are read by offset, so they must "
                             "not be compressed (img2dataset writes plain .tar)") from None
        with tar:
            try:
                for info in tar:
                    if not info.isreg() or _is_meta(info.name):
                        continue
                    if info.offset_data + info.size > size:
                        problems.append(f"{path}: member {info.name} is cut off (truncated tar); "
                                        "the samples after it are lost")
                        break
                    key, ext = split_member(info.name)
                    if key is None:
                        continue
                    if key != current:
                        current, seen = key, set()
                        keys.append(key)
                        first.append(len(exts))
                    if ext in seen:
                        problems.append(f"{path}: sample {key}: a second member {info.name} (ignored)")
                        continue
                    seen.add(ext)
                    exts.append(ext)
                    offsets.append(info.offset_data)
                    sizes.append(info.size)
            except (tarfile.TarError, OSError, EOFError) as exc:
                problems.append(f"{path}: damaged after {len(keys)} samples ({exc}); the rest is lost")
        first_a = np.asarray(first, dtype=np.int64)
        count = np.diff(np.append(first_a, len(exts))).astype(np.int64)
        return cls(path, np.asarray(keys, dtype=str), first_a, count, np.asarray(exts, dtype=str),
                   np.asarray(offsets, dtype=np.int64), np.asarray(sizes, dtype=np.int64), problems)

    # -- the sidecar ------------------------------------------------------------------------------------------
    def save(self, target: Path) -> None:
        from ...io import atomic_write_bytes
        import io

        st = self.path.stat()
        buf = io.BytesIO()
        np.savez(buf, version=np.int64(INDEX_VERSION), tar_size=np.int64(st.st_size),
                 tar_mtime=np.int64(st.st_mtime_ns), keys=self.keys, first=self.first, count=self.count,
                 exts=self.exts, offsets=self.offsets, sizes=self.sizes,
                 problems=np.asarray(self.problems, dtype=str))
        atomic_write_bytes(target, buf.getvalue())

    @classmethod
    def load(cls, path: Path, target: Path) -> "ShardIndex | None":
        """The sidecar ``target`` of shard ``path`` when it is current, else None."""
        try:
            st = path.stat()
            with np.load(target, allow_pickle=False) as z:
                if (int(z["version"]) != INDEX_VERSION or int(z["tar_size"]) != st.st_size
                        or int(z["tar_mtime"]) != st.st_mtime_ns):
                    return None
                return cls(path, z["keys"], z["first"], z["count"], z["exts"], z["offsets"], z["sizes"],
                           [str(p) for p in z["problems"]])
        except (OSError, ValueError, KeyError):
            return None


def cache_dir() -> Path:
    return Path(os.environ.get("ONELLM_INDEX_CACHE") or Path.home() / ".cache" / "onellm" / "index")


def index_locations(shard: Path) -> list[Path]:
    """Where the index of ``shard`` may lie: beside it, then in the cache (named by the shard's absolute path)."""
    digest = hashlib.sha256(str(shard.resolve()).encode()).hexdigest()[:24]
    return [shard.with_name(shard.name + INDEX_SUFFIX), cache_dir() / "shards" / f"{digest}{INDEX_SUFFIX}"]


def shard_index(shard: str | Path, write: bool = True) -> ShardIndex:
    """The index of ``shard``: a current sidecar, else scanned (and saved where possible when ``write``)."""
    shard = Path(shard)
    if not shard.is_file():
        raise ShardError(f"{shard}: shard not found")
    places = index_locations(shard)
    for place in places:
        if place.is_file() and (found := ShardIndex.load(shard, place)) is not None:
            return found
    index = ShardIndex.scan(shard)
    if write:
        for place in places:
            try:
                index.save(place)
                break
            except OSError:
                continue
    return index


# -- naming shards --------------------------------------------------------------------------------------------
def expand(spec: "str | os.PathLike | Sequence[str]", base: Path | None = None) -> tuple[list[Path], dict | None]:
    """The shard files an entry names, in order, and the descriptor when it names one.

    Each item is a brace pattern (``laion/{00000..41407}.tar``), a glob (``laion/*.tar``), a folder (its
    ``shards.json`` when there is one, else every ``*.tar`` under it, sorted), a ``shards.json`` descriptor, or a
    tar file. Relative paths resolve against ``base`` (default: the working directory).
    """
    import braceexpand

    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    base = base or Path.cwd()
    out: list[Path] = []
    descriptor = None
    for item in items:
        for pattern in braceexpand.braceexpand(str(item)):
            path = Path(pattern).expanduser()
            path = path if path.is_absolute() else base / path
            if path.is_dir() and (path / DESCRIPTOR).is_file():
                path = path / DESCRIPTOR
            if path.suffix == ".json":
                desc = read_descriptor(path)
                descriptor = descriptor or desc
                out += [Path(s["path"]) for s in desc["shards"]]
            elif path.is_dir():
                sets = sorted(p.parent.name for p in path.glob(f"*/{DESCRIPTOR}"))
                if sets:
                    raise ShardError(f"{path}: holds shard sets of several modality keys ({', '.join(sets)}); name "
                                     f"one folder per dataset entry, e.g. {path / sets[0]}")
                found = sorted(p for p in path.rglob("*.tar"))
                if not found:
                    raise ShardError(f"{path}: no .tar shards in this folder")
                out += found
            elif any(c in pattern for c in "*?["):
                found = sorted(Path(p) for p in glob.glob(str(path)))
                if not found:
                    raise ShardError(f"{pattern}: no shard matches")
                out += found
            else:
                out.append(path)
    if not out:
        raise ShardError(f"{spec}: names no shards")
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        raise ShardError(f"{len(missing)} shard(s) not found: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    return out, descriptor


def read_descriptor(path: Path) -> dict:
    try:
        desc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ShardError(f"{path}: cannot read the shard descriptor ({exc})") from None
    if not isinstance(desc, dict) or desc.get("format") != DESCRIPTOR_FORMAT or not isinstance(desc.get("shards"), list):
        raise ShardError(f"{path}: not a {DESCRIPTOR_FORMAT} descriptor (written by data_prep/make_shards.py)")
    for s in desc["shards"]:
        s["path"] = str((path.parent / s["path"]).resolve()) if not Path(s["path"]).is_absolute() else s["path"]
    return desc


class ShardSet:
    """The shards of one dataset entry: paths, samples per shard, and (lazily, per process) their indexes.

    Sample ``i`` of the set is sample ``i - starts[s]`` of shard ``s`` (shards in the order named). Only sample
    counts are held on the main process; a worker loads the index of a shard when it first reads from it.
    """

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int], descriptor: dict | None = None,
                 problems: Iterable[str] = ()):
        self.paths = [Path(p) for p in paths]
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.descriptor = descriptor or {}
        self.problems = list(problems)
        self._indexes: dict[int, ShardIndex] = {}
        self._fds: dict[int, int] = {}
        self._pid: int | None = None

    @classmethod
    def open(cls, spec: str | Sequence[str], base: Path | None = None, workers: int = 8) -> "ShardSet":
        paths, descriptor = expand(spec, base)
        counts: dict[str, int] = {}
        if descriptor:
            for s in descriptor["shards"]:
                try:
                    if os.stat(s["path"]).st_size == int(s["bytes"]):
                        counts[s["path"]] = int(s["samples"])
                except (OSError, KeyError, ValueError, TypeError):
                    pass
        todo = [p for p in paths if str(p) not in counts]
        problems: list[str] = []
        if todo:  # read (or build) the indexes: headers only, threads overlap the I/O
            with ThreadPoolExecutor(max(1, min(workers, len(todo)))) as pool:
                for p, index in zip(todo, pool.map(shard_index, todo)):
                    counts[str(p)] = len(index)
                    problems += index.problems
        return cls(paths, [counts[str(p)] for p in paths], descriptor, problems)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(shard, sample within it) of sample ``i``."""
        s = int(np.searchsorted(self.starts, i, side="right")) - 1
        return s, int(i - self.starts[s])

    def index(self, s: int) -> ShardIndex:
        if s not in self._indexes:
            if len(self._indexes) >= 16:  # a worker reads a few shards at a time (the shuffle window)
                self._indexes.pop(next(iter(self._indexes)))
            index = shard_index(self.paths[s])
            if len(index) != int(self.sizes[s]):
                raise ShardError(f"{self.paths[s]}: holds {len(index)} samples, {int(self.sizes[s])} when the run "
                                 "started (a shard changed during the run)")
            self._indexes[s] = index
        return self._indexes[s]

    def name(self, s: int) -> str:
        return str(self.paths[s])

    def _fd(self, s: int) -> int:
        if self._pid != os.getpid():  # a forked worker: descriptors of its own
            self._fds, self._pid = {}, os.getpid()
        if s not in self._fds:
            if len(self._fds) >= 16:
                os.close(self._fds.pop(next(iter(self._fds))))
            self._fds[s] = os.open(self.paths[s], os.O_RDONLY)
        return self._fds[s]

    def key(self, i: int) -> tuple[int, str]:
        s, local = self.locate(i)
        return s, str(self.index(s).keys[local])

    def read(self, i: int) -> tuple[int, str, dict[str, bytes]]:
        """(shard, sample key, {extension: bytes}) of sample ``i``: one ``pread`` per member, nothing else."""
        s, local = self.locate(i)
        index = self.index(s)
        fd = self._fd(s)
        out = {}
        for ext, (offset, size) in index.members(local).items():
            data = os.pread(fd, size, offset)
            if len(data) != size:
                raise ShardError(f"{self.paths[s]}: member {index.keys[local]}.{ext} is cut off "
                                 f"({len(data)} of {size} bytes)")
            out[ext] = data
        return s, str(index.keys[local]), out

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_indexes": {}, "_fds": {}, "_pid": None}

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass


def iter_samples(paths: Sequence[Path], errors: list[str] | None = None):
    """Stream ``{"__key__", "__url__", ext: bytes}`` samples of tars in order, with webdataset's own tar reader
    (sequential: what ``--verify`` and the streaming benchmark use). Read errors are appended to ``errors`` and
    the stream goes on with the next shard."""
    from webdataset import tariterators

    def handler(exc: BaseException) -> bool:
        if errors is None:
            return False
        errors.append(f"{type(exc).__name__}: {exc}")
        return True

    opened = tariterators.url_opener(({"url": str(p)} for p in paths), handler=handler)
    files = tariterators.tar_file_expander(opened, handler=handler)
    yield from tariterators.group_by_keys(files, handler=handler)
