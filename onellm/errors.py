"""User mistakes vs bugs: the errors ``onellm`` reports in one line instead of a traceback.

A :class:`UserError` (or one of the library's typed errors listed in :func:`user_error_types`) means the input is
wrong: a missing file, a bad recipe value, a corrupt checkpoint, a full disk. ``onellm.cli.main`` prints
``onellm <command>: error: <message>`` and exits 2; anything else is a bug and keeps its traceback. Messages name
the file or key and say what to do.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path
from typing import Iterator

# OS errors that come from the environment (permissions, read-only mounts, full disks), not from a bug
ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOENT,
                      errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EMFILE, errno.EIO}
HINTS = {errno.EROFS: "choose a writable location", errno.EACCES: "check the permissions or choose another location",
         errno.EPERM: "check the permissions or choose another location",
         errno.ENOSPC: "free some space or choose another disk", errno.EDQUOT: "free some space (disk quota exceeded)"}


class UserError(Exception):
    """Something the user can fix; the message names the file or key and the fix."""

    exit_code = 2


class UsageError(UserError, ValueError):
    """A command-line value or a file given to a command is unusable."""


class RecipeError(UserError, ValueError):
    """A training recipe (or an override) is invalid; the message names the key."""


class OutputLockedError(UserError, RuntimeError):
    """Another process is writing the same output file."""


class CheckpointError(UserError, RuntimeError):
    """A model directory, adapter or training checkpoint cannot be read; the message names the file."""


class TrainingDataError(UserError, RuntimeError):
    """Training cannot go on with this data (e.g. nothing loadable / learnable in a whole epoch)."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Typed errors that mean bad input. Only modules already imported are consulted, so that reporting an error
    never imports torch."""
    types: list[type[BaseException]] = [UserError]
    for module, name in (("onellm.data.errors", "InputError"), ("onellm.data.manifest", "ManifestError"),
                         ("onellm.convert", "ConversionError"),
                         ("onellm.evaluation.engine", "EvalError")):
        mod = sys.modules.get(module)
        if mod is not None and isinstance(getattr(mod, name, None), type):
            types.append(getattr(mod, name))
    return tuple(types)


def is_user_error(exc: BaseException) -> bool:
    if isinstance(exc, user_error_types()):
        return True
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)):
        return True  # raised by the library with a message naming the path, or by the OS with the file name
    return isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS


def one_line(exc: BaseException) -> str:
    """The message of a user error as one line (multi-line messages, e.g. a manifest's bad lines, keep their
    first line here; the caller prints the rest)."""
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror and not isinstance(exc, UserError):
        hint = f" ({HINTS[exc.errno]})" if exc.errno in HINTS else ""
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return f"{where}{exc.strerror}{hint}"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith("'"):
        text = text.strip("'")
    return text


@contextlib.contextmanager
def naming(path: str | Path, replace: bool = False) -> Iterator[None]:
    """Give an OSError raised without a file name (``write`` on a full disk, ``fsync``) the path it concerns;
    ``replace``: name ``path`` even when the error names another (a hidden temporary file inside it)."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None and (exc.filename is None or replace):
            raise OSError(exc.errno, os.strerror(exc.errno), str(path)) from exc
        raise
