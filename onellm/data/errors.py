"""Typed error for bad inputs: every loader raises it with the file and the problem in the message."""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """An input file cannot be used: missing, unreadable, corrupt, wrong shape or non-finite values.

    ``str(err)`` is ``"<path>: <problem>"`` so batch jobs can record it per sample and go on.
    """

    def __init__(self, path: "str | Path | None", problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
