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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

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
