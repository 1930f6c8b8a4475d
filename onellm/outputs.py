"""Resumable JSONL outputs (``onellm infer`` answers, eval predictions): read what is done, repair, lock, append.

One JSON object with an ``id`` per line, appended and fsynced batch by batch. A run reads the file first to skip
the ids already there:

* a torn *last* line (no trailing newline and not a complete row: a kill mid-write) is ignored and, by the run that
  holds the lock, truncated away so appends stay valid JSONL; a complete last row without its newline gets one;
* any other bad line (not UTF-8, not JSON, blank, not an object with a string/number ``id``) is reported with its
  line number and skipped: it never causes a valid line to be removed;
* only one process writes an output at a time: :class:`OutputLock` takes an exclusive fcntl lock on
  ``<output>.lock`` and refuses a second writer, naming the PID that holds it.
"""
from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from .errors import OutputLockedError, naming


@dataclass
class OutputScan:
    """What an output file holds. ``good_bytes``: length of the file up to the end of its last complete line."""

    done: set[str] = field(default_factory=set)  # ids with a row (answer or error)
    answered: set[str] = field(default_factory=set)  # ids with an "answer"
    failed: set[str] = field(default_factory=set)  # ids with an "error" (and no answer)
    bad_lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, problem), kept in the file
    good_bytes: int = 0
    torn_tail: bool = False  # a final segment without newline that is not a complete row
    missing_newline: bool = False  # the final row is complete but has no trailing newline

    def warnings(self, path: Path, limit: int = 5) -> list[str]:
        out = [f"{path} line {n}: {problem}; line kept, ignored" for n, problem in self.bad_lines[:limit]]
        if len(self.bad_lines) > limit:
            out.append(f"{path}: ... and {len(self.bad_lines) - limit} more bad lines")
        return out


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"not a JSON object ({type(row).__name__})"
    rid = row.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid) == "":
        return "no string or number 'id'"
    return None


def iter_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None, int, bool]]:
    """(line number, row or None, problem or None, byte offset after the line, line ended with a newline)."""
    offset = 0
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            offset += len(raw)
            ended = raw.endswith(b"\n")
            if not raw.strip():
                yield n, None, "blank line", offset, ended
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield n, None, "not UTF-8 text", offset, ended
                continue
            except json.JSONDecodeError as exc:
                yield n, None, f"invalid JSON ({exc.msg}, column {exc.colno})", offset, ended
                continue
            problem = _row_problem(row)
            yield n, None if problem else row, problem, offset, ended


def scan_output(path: str | Path) -> OutputScan:
    """Read ``path`` (missing: empty); never modifies it."""
    path = Path(path)
    scan = OutputScan()
    if not path.exists():
        return scan
    last: tuple[int, dict | None, str | None, int, bool] | None = None
    for item in iter_rows(path):
        if last is not None:
            _take(scan, last)
        last = item
    if last is not None:
        n, row, problem, offset, ended = last
        if ended:
            _take(scan, last)
        elif row is not None:
            _take(scan, last)
            scan.missing_newline = True
        else:  # a kill mid-write: the only line that may be dropped
            scan.torn_tail = True
    return scan


def _take(scan: OutputScan, item: tuple[int, dict | None, str | None, int, bool]) -> None:
    n, row, problem, offset, _ = item
    scan.good_bytes = offset
    if row is None:
        scan.bad_lines.append((n, problem or "bad line"))
        return
    rid = str(row["id"])
    scan.done.add(rid)
    if "answer" in row:
        scan.answered.add(rid)
        scan.failed.discard(rid)
    elif "error" in row and rid not in scan.answered:
        scan.failed.add(rid)


def repair(path: Path, scan: OutputScan) -> None:
    """Make ``path`` safe to append to: drop a torn last line, end a complete last row with its newline. Call it
    only while holding the output's lock."""
    if scan.torn_tail:
        with naming(path), path.open("r+b") as f:
            f.truncate(scan.good_bytes)
            os.fsync(f.fileno())
    elif scan.missing_newline:
        with naming(path), path.open("ab") as f:
            f.write(b"\n")
            os.fsync(f.fileno())


class OutputLock:
    """``with OutputLock(output):`` exclusive lock on ``<output>.lock`` (holding this process's PID); a second
    writer gets :class:`OutputLockedError` at once. The lock file is removed on release.

    A POSIX record lock (``fcntl.lockf``), not ``flock``: it belongs to this process only, so DataLoader workers
    forked while it is held do not inherit it, and it goes away the moment the process dies (a killed run never
    blocks its rerun); it also works on NFS."""

    def __init__(self, output: str | Path, lock_path: str | Path | None = None):
        self.output = Path(output)
        self.path = Path(lock_path) if lock_path is not None else self.output.with_name(self.output.name + ".lock")
        self.fd: int | None = None

    def acquire(self) -> "OutputLock":
        import fcntl

        from .io import file_mode

        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, file_mode())
            except OSError as exc:  # a read-only or full location: name the output the user gave
                raise OSError(exc.errno, exc.strerror, str(self.output)) from exc
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = os.read(fd, 64).decode("ascii", "replace").strip() or "unknown"
                os.close(fd)
                raise OutputLockedError(f"{self.output}: another onellm process (PID {holder}) is writing this "
                                        f"output (lock {self.path}); wait for it to finish or choose another "
                                        "output") from None
            try:  # the holder we waited for may have removed the file: lock the one that is there now
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding it: nobody can lock this inode after us
        finally:
            os.close(self.fd)  # closing releases the lock
            self.fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class JsonlAppender:
    """Appends JSON lines and makes them durable batch by batch (flush + fsync)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with naming(path):
            self.f = path.open("a", encoding="utf-8")

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        with naming(self.path):
            for row in rows:
                self.f.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.f.flush()
            os.fsync(self.f.fileno())

    def close(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass  # a failed flush was reported by write() already
