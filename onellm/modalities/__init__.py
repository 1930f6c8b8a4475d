"""The modality registry: every modality the library knows, one :class:`ModalityDefinition` each.

The eight modalities of OneLLM live in one file each (``image.py`` ... ``fmri.py``) and are registered below, in
the order of the released model. A new modality is one file with one definition plus one registry line here, or a
call ``onellm.modalities.register(definition)`` from any module of your own (see the README, "Adding a modality").

Everything else in the library reads these definitions (``get(name)``) or iterates over a model's own
``config.modalities``; nothing outside this package names a modality.
"""
from __future__ import annotations

from typing import Iterable

from .audio import AUDIO
from .base import ClipPatches, LoaderSpec, ModalityDefinition, OwnTokenizer, SynthSpec
from .depth import DEPTH
from .fmri import FMRI
from .image import IMAGE
from .imu import IMU
from .normal import NORMAL
from .point import POINT
from .video import VIDEO

__all__ = ["ClipPatches", "LoaderSpec", "ModalityDefinition", "OwnTokenizer", "SynthSpec", "DEFAULT_MODALITIES",
           "get", "is_registered", "names", "parse_modalities", "register", "resolve", "unregister"]

_REGISTRY: dict[str, ModalityDefinition] = {}
_ALIASES: dict[str, str] = {}


def register(definition: ModalityDefinition, *, replace: bool = False) -> ModalityDefinition:
    """Add a modality; its name and aliases must be new unless ``replace``. Returns the definition."""
    if not isinstance(definition, ModalityDefinition):
        raise TypeError(f"expected a ModalityDefinition, got {type(definition).__name__}")
    keys = (definition.name, *definition.aliases)
    taken = [k for k in keys if (k in _REGISTRY or k in _ALIASES) and not replace]
    if taken:
        raise ValueError(f"modality name or alias already registered: {', '.join(taken)}")
    if replace and definition.name in _REGISTRY:
        unregister(definition.name)
    _REGISTRY[definition.name] = definition
    for alias in definition.aliases:
        _ALIASES[alias] = definition.name
    return definition


def unregister(name: str) -> None:
    """Remove a modality (tests that register one of their own clean up with this)."""
    definition = _REGISTRY.pop(resolve(name))
    for alias in definition.aliases:
        _ALIASES.pop(alias, None)


def is_registered(name: str) -> bool:
    key = str(name).strip().lower()
    return key in _REGISTRY or key in _ALIASES


def resolve(name: str) -> str:
    """The canonical name of a modality name or alias (``"RGBD"`` -> ``"depth"``); ValueError if unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise ValueError(f"unknown modality {name!r}; expected one of: {', '.join(_REGISTRY)}")
    return key


def get(name: str) -> ModalityDefinition:
    """The definition of a modality (name or alias)."""
    return _REGISTRY[resolve(name)]


def names() -> list[str]:
    """Every registered modality, in registration order."""
    return list(_REGISTRY)


def parse_modalities(spec: "bool | str | Iterable[str] | None", default: Iterable[str] | None = None) -> list[str]:
    """The one modality-set parser: ``True``/``None`` -> ``default`` (all registered when None), ``False`` -> [],
    ``"image,audio"`` or a list of names/aliases -> canonical names without duplicates, in the order given."""
    if spec is None or spec is True:
        return list(default) if default is not None else names()
    if spec is False:
        return []
    items = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in items:
        if str(item).strip():
            name = resolve(item)
            if name not in out:
                out.append(name)
    return out


for _definition in (IMAGE, VIDEO, AUDIO, POINT, DEPTH, NORMAL, IMU, FMRI):
    register(_definition)

# What a config without a ``modalities`` field means: the released model's eight, in its order.
DEFAULT_MODALITIES: tuple[str, ...] = ("image", "video", "audio", "point", "depth", "normal", "imu", "fmri")
