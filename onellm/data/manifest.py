"""The JSONL manifest format shared by alignment, instruction tuning, inference and evaluation.

One JSON object per line::

    {"id": "coco-42",
     "inputs": [{"modality": "image", "path": "images/42.jpg"}],      # zero, one or several inputs
     "caption": "a dog on a couch"}                                    # alignment (a string or a list)
    {"id": "av-7", "inputs": [{"modality": "video", "path": "v.mp4"}, {"modality": "audio", "path": "a.wav"}],
     "conversations": [{"from": "human", "value": "What happens?"}, {"from": "gpt", "value": "..."}]}
    {"id": "q-3", "inputs": [{"modality": "depth", "path": "d.png", "rgb": "rgb.png"}],
     "prompt": "What is the category of this scene?", "answer": "kitchen"}   # inference / evaluation

Relative paths (``path`` and path-valued options ``rgb``, ``timestamps``) resolve against the manifest's folder.
Modality options are the modality loader's (its definition in ``onellm.modalities``): depth/normal ``rgb``
(required); imu ``timestamps``, ``start``, ``end`` (seconds), ``rate``; video ``backend``.
Any other keys (``attributes``, ``references``, ``task`` ...) are kept in ``Record.extra``.
"""
from __future__ import annotations

import json
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..modalities import get as modality_definition
from ..modalities import names as registered_modalities
from ..modalities import resolve as resolve_modality


def path_option_names() -> tuple[str, ...]:
    """Loader options of any registered modality that hold a file path (``rgb``, ``timestamps`` ...)."""
    return tuple(dict.fromkeys(o for m in registered_modalities() for o in modality_definition(m).loader.path_options))


KNOWN_KEYS = {"id", "inputs", "caption", "conversations", "prompt", "answer", "type"}


class ManifestError(ValueError):
    """A manifest has bad lines; ``problems`` lists ``(line_number, message)`` for every one of them."""

    def __init__(self, path: str | Path, problems: list[tuple[int, str]]):
        self.path, self.problems = str(path), problems
        shown = "\n".join(f"  line {n}: {msg}" for n, msg in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path}: {len(problems)} bad line(s)\n{shown}{more}")


def text_chars(record: "Record") -> int:
    """Characters of a record's text (conversations, else its first caption, else its prompt): the length proxy of
    length grouping."""
    if record.conversations:
        return sum(len(t["value"]) for t in record.conversations)
    cap = record.caption[0] if isinstance(record.caption, list) else record.caption
    return len(cap or record.prompt or "")


@dataclass
class InputRef:
    modality: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)

    def as_source(self) -> dict[str, Any]:
        """The dict form the loaders take: ``{"modality", "path", **options}``."""
        return {"modality": self.modality, "path": self.path, **self.options}


@dataclass
class Record:
    id: str
    inputs: list[InputRef] = field(default_factory=list)
    caption: str | list[str] | None = None
    conversations: list[dict[str, str]] | None = None
    prompt: str | None = None
    answer: str | None = None
    type: str | None = None  # instruction data type for length grouping; default: the modality key
    extra: dict[str, Any] = field(default_factory=dict)
    line: int = 0

    @property
    def modality_key(self) -> str:
        """"image", "video+audio", or "text" for records without inputs: the unit of single-modality batching."""
        return "+".join(i.modality for i in self.inputs) or "text"


def _resolve(base: Path, value: str) -> str:
    """``str(base / Path(value).expanduser())`` (absolute values kept); plain relative paths take a string fast
    path with the same result (pathlib costs ~40 us a call: most of a multi-million-line manifest's read)."""
    if value and value[0] not in "~/." and "//" not in value and "/." not in value and value[-1] != "/":
        return f"{base}{os.sep}{value}" if str(base) != os.sep else f"{os.sep}{value}"
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p))


def parse_record(obj: Any, base: Path, line: int = 0) -> Record:
    """Validate one manifest object; raises ValueError with the problem."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if "id" not in obj or not isinstance(obj["id"], (str, int)) or str(obj["id"]) == "":
        raise ValueError("missing or empty 'id'")
    rid = str(obj["id"])
    raw_inputs = obj.get("inputs", [])
    if not isinstance(raw_inputs, list):
        raise ValueError(f"{rid}: 'inputs' must be a list")
    inputs: list[InputRef] = []
    for k, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise ValueError(f"{rid}: inputs[{k}] must be an object")
        try:
            modality = resolve_modality(item.get("modality", ""))
        except ValueError as exc:
            raise ValueError(f"{rid}: inputs[{k}]: {exc}") from None
        if not isinstance(item.get("path"), str) or not item["path"]:
            raise ValueError(f"{rid}: inputs[{k}] ({modality}) needs a 'path' string")
        options = {key: v for key, v in item.items() if key not in ("modality", "path")}
        spec = modality_definition(modality).loader
        unknown = set(options) - set(spec.options)
        if unknown:
            raise ValueError(f"{rid}: inputs[{k}] ({modality}) has unknown option(s) {sorted(unknown)}; "
                             f"allowed: {list(spec.options) or 'none'}")
        missing = [o for o in spec.required if o not in options]
        if missing:
            what = "; ".join(spec.option_help.get(o, o) for o in missing)
            raise ValueError(f"{rid}: inputs[{k}] ({modality}) needs {missing} ({what})")
        for key in spec.number_options:
            if key in options and (isinstance(options[key], bool) or not isinstance(options[key], (int, float))):
                raise ValueError(f"{rid}: inputs[{k}] option {key!r} must be a number")
        for key in spec.path_options:
            if key in options:
                options[key] = _resolve(base, str(options[key]))
        inputs.append(InputRef(modality, _resolve(base, item["path"]), options))
    caption = obj.get("caption")
    if caption is not None:
        if isinstance(caption, list):
            if not caption or not all(isinstance(c, str) and c.strip() for c in caption):
                raise ValueError(f"{rid}: 'caption' list must hold non-empty strings")
        elif not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"{rid}: 'caption' must be a non-empty string or a list of them")
    conv = obj.get("conversations")
    if conv is not None:
        if not isinstance(conv, list) or not conv:
            raise ValueError(f"{rid}: 'conversations' must be a non-empty list")
        for k, turn in enumerate(conv):
            expected = "human" if k % 2 == 0 else "gpt"
            if not isinstance(turn, dict) or turn.get("from") != expected or not isinstance(turn.get("value"), str):
                raise ValueError(f"{rid}: conversations[{k}] must be {{'from': '{expected}', 'value': str}} "
                                 "(turns alternate human, gpt)")
    for key in ("prompt", "answer", "type"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise ValueError(f"{rid}: {key!r} must be a string")
    extra = {k: v for k, v in obj.items() if k not in KNOWN_KEYS}
    return Record(rid, inputs, caption, conv, obj.get("prompt"), obj.get("answer"), obj.get("type"), extra, line)


def decode_line(raw: bytes, n: int) -> tuple[str | None, str | None]:
    """(text, None) or (None, problem) for one line of a UTF-8 JSONL file; a BOM on line 1 is dropped."""
    if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, (f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at column {exc.start + 1} "
                      "(re-encode the file as UTF-8)")


def iter_manifest(path: str | Path) -> Iterator[tuple[int, Record | None, str | None]]:
    """(line number, record or None, problem or None) for every non-empty line."""
    path = Path(path)
    base = path.parent.resolve()
    with path.open("rb") as f:  # bytes: a line that is not UTF-8 is one bad line, not a crash of the whole read
        for n, raw in enumerate(f, 1):
            line, problem = decode_line(raw, n)
            if problem is not None:
                yield n, None, problem
                continue
            if not line.strip():
                continue
            try:
                yield n, parse_record(json.loads(line), base, n), None
            except json.JSONDecodeError as exc:
                yield n, None, f"invalid JSON: {exc.msg} (column {exc.colno})"
            except ValueError as exc:
                yield n, None, str(exc)


def read_manifest(path: str | Path, require: str | None = None) -> list[Record]:
    """Read and validate a manifest; every bad line is reported at once in a :class:`ManifestError`.

    Args:
        require: "caption", "conversations" or "prompt" to demand that field (prompt may be absent for
            inference; pass None there).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    records, problems, seen = [], [], {}
    for n, rec, problem in iter_manifest(path):
        if rec is not None:
            if rec.id in seen:
                problem = f"duplicate id {rec.id!r} (first on line {seen[rec.id]})"
            elif require and getattr(rec, require) is None:
                problem = f"{rec.id}: missing {require!r}"
        if problem:
            problems.append((n, problem))
            continue
        seen[rec.id] = n
        records.append(rec)
    if problems:
        raise ManifestError(path, problems)
    return records


def iter_lines(path: str | Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, raw bytes without the newline) of every line, streamed."""
    offset = 0
    with Path(path).open("rb") as f:
        for n, raw in enumerate(f, 1):
            yield n, offset, raw
            offset += len(raw)


class ManifestIndex(Sequence[Record]):
    """A validated manifest in bounded memory: a byte-offset index of its lines (plus per-line modality key, data
    type, text length and input count codes: about 30 bytes a line), records parsed on access. ``index[i]`` equals
    ``read_manifest(path)[i]``; a 5-million-line manifest is ~150 MB of arrays instead of ~7 GB of records, and the
    arrays are shared copy-on-write by forked DataLoader workers (a list of Python objects is not: reference
    counts touch every page).

    Build with :meth:`build` (streams the file once with every check of :func:`read_manifest`; duplicate ids by
    64-bit hashes of the ids, confirmed on the colliding lines only) or :meth:`open` (the same, through an on-disk
    cache of memory-mapped arrays keyed by the file's path, size, mtime and the registered modalities).
    """

    ARRAYS = ("offsets", "sizes", "lines", "keys", "types", "chars", "inputs")
    VERSION = 1

    def __init__(self, path: str | Path, arrays: dict[str, np.ndarray], key_names: list[str],
                 type_names: list[str], selection: np.ndarray | None = None):
        self.path = Path(path)
        self.base = self.path.parent.resolve()
        self.arrays, self.key_names, self.type_names = arrays, list(key_names), list(type_names)
        self.selection = selection
        self._fd: int | None = None
        self._pid: int | None = None

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, path: str | Path, require: str | None = None) -> "ManifestIndex":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: manifest not found")
        base = path.parent.resolve()
        cols = {"offsets": array("q"), "sizes": array("i"), "lines": array("i"), "keys": array("i"),
                "types": array("i"), "chars": array("i"), "inputs": array("i")}
        hashes, has_req = array("q"), array("b")
        key_codes: dict[str, int] = {}
        type_codes: dict[str, int] = {}
        problems: dict[int, str] = {}
        for n, offset, raw in iter_lines(path):
            line, problem = decode_line(raw, n)
            if problem is None and not line.strip():
                continue
            rec = None
            if problem is None:
                try:
                    rec = parse_record(json.loads(line), base, n)
                except json.JSONDecodeError as exc:
                    problem = f"invalid JSON: {exc.msg} (column {exc.colno})"
                except ValueError as exc:
                    problem = str(exc)
            if rec is None:
                problems[n] = problem
                continue
            ok = not require or getattr(rec, require) is not None
            if not ok:
                problems[n] = f"{rec.id}: missing {require!r}"
            hashes.append(hash(rec.id))
            has_req.append(ok)
            cols["offsets"].append(offset)
            cols["sizes"].append(len(raw))
            cols["lines"].append(n)
            cols["keys"].append(key_codes.setdefault(rec.modality_key, len(key_codes)))
            cols["types"].append(type_codes.setdefault(rec.type or rec.modality_key, len(type_codes)))
            cols["chars"].append(text_chars(rec))
            cols["inputs"].append(len(rec.inputs))
        arrays = {}
        for k in list(cols):  # exact-size copies, one column at a time (array.array over-allocates)
            v = cols.pop(k)
            arrays[k] = np.array(v, dtype=np.dtype(v.typecode)) if len(v) else np.zeros(0, np.dtype(v.typecode))
            del v
        index = cls(path, arrays, list(key_codes), list(type_codes))
        index._check_duplicates(np.frombuffer(hashes, np.int64) if len(hashes) else np.zeros(0, np.int64),
                                np.frombuffer(has_req, np.int8) if len(has_req) else np.zeros(0, np.int8),
                                problems, require)
        del hashes, has_req
        if problems:
            raise ManifestError(path, sorted(problems.items()))
        return index

    def _check_duplicates(self, hashes: np.ndarray, has_req: np.ndarray, problems: dict[int, str],
                          require: str | None) -> None:
        """read_manifest's sequential rule, from hashes: within one id, lines without ``require`` before the first
        good line are "missing", every line after it is a duplicate."""
        if len(hashes) < 2:
            return
        sorted_h = np.sort(hashes)
        repeated = np.unique(sorted_h[1:][sorted_h[1:] == sorted_h[:-1]])
        del sorted_h
        if not len(repeated):
            return
        rows = np.flatnonzero(np.isin(hashes, repeated))
        by_id: dict[str, list[int]] = {}
        for row in rows.tolist():  # few lines: parse them again for their real ids
            by_id.setdefault(self._parse(int(row)).id, []).append(int(row))
        for rid, group in by_id.items():
            first = None
            for row in sorted(group):
                n = int(self.arrays["lines"][row])
                if first is not None:
                    problems[n] = f"duplicate id {rid!r} (first on line {first})"
                elif has_req[row]:
                    first = n

    # -- the on-disk cache ------------------------------------------------------------------------------------
    @classmethod
    def _cache_key(cls, path: Path, require: str | None) -> str:
        import hashlib

        from ..modalities import get, names

        st = path.stat()
        spec = [cls.VERSION, str(path.resolve()), st.st_size, st.st_mtime_ns, require,
                [(m, get(m).loader.options) for m in names()]]
        return hashlib.sha256(json.dumps(spec, default=str).encode()).hexdigest()[:24]

    @classmethod
    def open(cls, path: str | Path, require: str | None = None,
             cache_dir: str | Path | None = None) -> "ManifestIndex":
        """:meth:`build`, memoised in ``cache_dir`` (default ``$ONELLM_INDEX_CACHE``; none: in memory only). The
        cached arrays are memory-mapped: processes of one machine share their pages."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: manifest not found")
        cache_dir = cache_dir or os.environ.get("ONELLM_INDEX_CACHE")
        if not cache_dir:
            return cls.build(path, require)
        folder = Path(cache_dir) / cls._cache_key(path, require)
        meta_file = folder / "meta.json"
        if meta_file.is_file():
            try:
                meta = json.loads(meta_file.read_text(encoding="utf-8"))
                arrays = {k: np.load(folder / f"{k}.npy", mmap_mode="r", allow_pickle=False) for k in cls.ARRAYS}
                return cls(path, arrays, meta["keys"], meta["types"])
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache entry: rebuild it
        index = cls.build(path, require)
        try:
            index.save(folder)
        except OSError:
            return index  # a read-only cache: the in-memory index serves
        return cls.open(path, require, cache_dir)

    def save(self, folder: str | Path) -> None:
        from ..io import atomic_directory

        with atomic_directory(Path(folder)) as tmp:
            for k in self.ARRAYS:
                np.save(tmp / f"{k}.npy", np.asarray(self.arrays[k]), allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps({"keys": self.key_names, "types": self.type_names,
                                                       "source": str(self.path)}), encoding="utf-8")

    # -- access -----------------------------------------------------------------------------------------------
    def rows(self) -> np.ndarray:
        """Positions of this view's records among the manifest's lines."""
        return np.arange(len(self.arrays["offsets"])) if self.selection is None else self.selection

    def __len__(self) -> int:
        return len(self.arrays["offsets"]) if self.selection is None else len(self.selection)

    def column(self, name: str) -> np.ndarray:
        values = self.arrays[name]
        return np.asarray(values) if self.selection is None else np.asarray(values)[self.selection]

    def select(self, mask: np.ndarray) -> "ManifestIndex":
        """The view of the records where ``mask`` (over this view) holds."""
        return ManifestIndex(self.path, self.arrays, self.key_names, self.type_names, self.rows()[np.asarray(mask)])

    def modality_keys(self) -> list[str]:
        return [self.key_names[c] for c in self.column("keys").tolist()]

    def data_types(self) -> list[str]:
        return [self.type_names[c] for c in self.column("types").tolist()]

    def _read(self, row: int) -> bytes:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return os.pread(self._fd, int(self.arrays["sizes"][row]), int(self.arrays["offsets"][row]))

    def _parse(self, row: int) -> Record:
        n = int(self.arrays["lines"][row])
        line, problem = decode_line(self._read(row), n)
        if problem is not None:
            raise ManifestError(self.path, [(n, problem + " (the manifest changed after it was indexed)")])
        return parse_record(json.loads(line), self.base, n)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._parse(int(i if self.selection is None else self.selection[i]))

    def __iter__(self) -> Iterator[Record]:
        for i in range(len(self)):
            yield self[i]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fd": None, "_pid": None}

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None and self._pid == os.getpid():
            try:
                os.close(self._fd)
            except OSError:
                pass


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write rows atomically and durably (``onellm.io``: a temporary sibling, fsynced, renamed, directory
    fsynced; the umask's mode). ``rows`` may be a generator: it is streamed, never held in memory."""
    from ..errors import naming
    from ..io import finish_file, fsync_dir, temp_sibling

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with naming(path), tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        finish_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
