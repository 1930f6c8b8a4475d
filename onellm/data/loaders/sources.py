"""What a loader reads: a path, or a named binary file object (a shard member's bytes in memory,
``onellm.data.shards.members.Member``). Every decoding library the loaders use reads both (PIL, numpy, torch,
soundfile, PyAV, decord, trimesh), so a loader only needs these few helpers to serve both, unchanged otherwise."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def is_file_object(source: Any) -> bool:
    return hasattr(source, "read") and hasattr(source, "seek")


def opened(source: Any, fresh: bool = False) -> Any:
    """What a decoding library is given: the path as a string, or the file object rewound to its start
    (``fresh``: an independent copy, for a second reader while the first is still open)."""
    if not is_file_object(source):
        return str(source)
    if fresh:
        copy = io.BytesIO(source.getvalue())
        copy.name = getattr(source, "name", "")
        return copy
    source.seek(0)
    return source


def suffix(source: Any) -> str:
    """The file extension (lower case, with the dot) of a path or of a named file object."""
    if is_file_object(source):
        return str(getattr(source, "suffix", Path(str(getattr(source, "name", ""))).suffix)).lower()
    return Path(source).suffix.lower()


def as_source(value: Any) -> Any:
    """A path-valued option as loaders use it: file objects stay as they are, anything else becomes a Path."""
    return value if is_file_object(value) or value is None else Path(value)


def exists(source: Any) -> bool:
    """A file object is there by construction; a path must be a regular file."""
    return is_file_object(source) or Path(source).is_file()
