"""``load_modality``: a file (or a manifest input dict) -> the model's input tensor, through the registry.

Every check that does not need the decoder happens here, for every modality alike: the options it accepts, its
file extensions, that the file exists. The decoder (the definition's ``loader.load``) does the rest and raises
:class:`~onellm.data.errors.InputError` naming the file; any other decoder exception is wrapped into one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.errors import InputError
from . import get, resolve


def split_source(modality: str, source: "str | os.PathLike | dict") -> tuple[Path, dict[str, Any]]:
    """A path, or a manifest input ``{"modality", "path", <options>}`` -> (path, options of the dict)."""
    if not isinstance(source, dict):
        return Path(source), {}
    entry = dict(source)
    path = entry.pop("path", None)
    if path is None or str(path) == "":
        raise InputError(None, f"manifest input {source!r} has no 'path'")
    named = entry.pop("modality", None)
    if named is not None:
        try:
            named = resolve(named)
        except ValueError as exc:
            raise InputError(path, str(exc)) from None
        if named != modality:
            raise InputError(path, f"manifest input is a {named} input but was loaded as {modality}")
    return Path(path), entry


def load_modality(modality: str, source: "str | os.PathLike | dict", train: bool = False, config=None,
                  **options: Any):
    """Load one input file as the model's float32 input tensor for ``modality``.

    Args:
        modality: a registered modality name or alias.
        source: a file path, or a manifest input dict ``{"modality": ..., "path": ..., <options>}`` whose
            relative paths the caller has already resolved; explicit ``options`` override the dict's.
        train: apply the original training augmentations (torch's global RNG).
        config: geometry of the inputs (a ``OneLLMConfig``); defaults to the ``onellm-7b`` preset.
        **options: the modality's loader options (``rgb``, ``timestamps`` ...); ``None`` means "not given".
    Raises:
        InputError: missing, unsupported, unreadable or malformed input (``str`` names the file).
    """
    definition = get(modality)
    spec = definition.loader
    path, merged = split_source(definition.name, source)
    merged.update({k: v for k, v in options.items() if v is not None})
    merged = {k: v for k, v in merged.items() if v is not None}
    unknown = sorted(set(merged) - set(spec.options))
    if unknown:
        raise InputError(path, f"unknown option(s) {', '.join(unknown)} for {definition.name} inputs; "
                               f"supported: {', '.join(spec.options) or 'none'}")
    if path.suffix.lower() not in spec.extensions:
        raise InputError(path, f"unsupported file extension {path.suffix!r} for {definition.name} inputs; "
                               f"supported: {', '.join(spec.extensions)}")
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "not a regular file")
    if config is None:
        from ..config import OneLLMConfig

        config = OneLLMConfig.preset("onellm-7b")
    try:
        tensor = spec.load(path, train=train, config=config, **merged)
    except InputError:
        raise
    except (ValueError, RuntimeError, OSError, EOFError, IndexError, KeyError) as exc:
        # Safety net: a decoder error no loader anticipated still names the file.
        raise InputError(path, f"cannot load {definition.name} input: {exc}") from exc
    return tensor.float()
