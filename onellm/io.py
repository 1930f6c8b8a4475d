"""Durable file writes: the one place that knows how to replace a file or a directory atomically.

Every write that matters (model directories, training checkpoints, manifests, eval results, feature caches) goes
through here, so each gets the same guarantees:

* atomic: data goes to a process-unique temporary sibling, which is renamed over the target only when complete,
  so a reader (or a resumed run) sees the old version or the new one, never a torn one;
* durable: the file is fsynced before the rename and the parent directory after it, so a power loss cannot leave
  a renamed but empty file;
* shareable: files get the mode the umask gives (``tempfile`` and safetensors create 0600 files, which other
  users of a shared cluster could not read).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping


def _current_umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 minus the umask)."""
    return 0o666 & ~_current_umask()


def dir_mode() -> int:
    return 0o777 & ~_current_umask()


def temp_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """A process- and call-unique hidden name next to ``path`` (same filesystem, so the rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new entry in ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """Give every file under ``root`` the umask's mode (libraries create some 0600) and fsync every file and
    directory (before ``root`` is renamed into place)."""
    root = Path(root)
    mode = file_mode()
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            os.chmod(Path(dirpath) / name, mode)
            fsync_file(Path(dirpath) / name)
        fsync_dir(dirpath)


def finish_file(path: str | Path) -> None:
    """Give a file written by a library (safetensors, torch, HF) the umask's mode and flush it to disk."""
    os.chmod(path, file_mode())
    fsync_file(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically and durably; creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def atomic_write_jsonl(path: str | Path, rows: list[Mapping[str, Any]]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def save_safetensors(tensors: Mapping[str, Any], path: str | Path, metadata: Mapping[str, str] | None = None) -> Path:
    """``safetensors.torch.save_file`` with the umask's mode and an fsync (not atomic by itself: write it inside
    an :class:`atomic_directory`, or to a temporary name)."""
    from safetensors.torch import save_file

    save_file(dict(tensors), str(path), metadata=dict(metadata) if metadata else None)
    finish_file(path)
    return Path(path)


class atomic_directory:
    """``with atomic_directory(path) as tmp:`` write into ``tmp``; on success it replaces ``path`` as a whole.

    Everything in ``tmp`` is fsynced before the swap and the parent directory after it; on an exception ``tmp`` is
    removed and ``path`` is left as it was.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tmp = temp_sibling(self.path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        os.chmod(self.tmp, dir_mode())
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        fsync_tree(self.tmp)
        old = temp_sibling(self.path, "old")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        shutil.rmtree(old, ignore_errors=True)
