"""Registration with transformers' Auto classes, done when both sides are loaded.

``import onellm`` must stay fast (``onellm --help`` imports it, and transformers costs seconds), yet after it
``AutoConfig`` / ``AutoModelForCausalLM`` / ``AutoProcessor`` must know ``model_type == "onellm"``. So each
registration runs as soon as both the transformers auto module and the OneLLM module it needs have finished
importing, whichever comes last (a post-import hook on the import system). Importing our model imports
transformers' auto modules midway (through HF's LLaMA), so waiting for *finished* imports matters.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys


def _config(auto) -> None:
    from .config import OneLLMConfig

    auto.AutoConfig.register(OneLLMConfig.model_type, OneLLMConfig, exist_ok=True)


def _model(auto) -> None:
    from .config import OneLLMConfig
    from .model.onellm import OneLLMForConditionalGeneration

    for name in ("AutoModel", "AutoModelForCausalLM", "AutoModelForImageTextToText"):
        getattr(auto, name).register(OneLLMConfig, OneLLMForConditionalGeneration, exist_ok=True)


def _processor(auto) -> None:
    from .config import OneLLMConfig
    from .processing import OneLLMProcessor

    auto.AutoProcessor.register(OneLLMConfig, OneLLMProcessor, exist_ok=True)


# (transformers auto module, the OneLLM modules the registration imports, registration)
_REGISTRATIONS = (
    ("transformers.models.auto.configuration_auto", ("onellm.config",), _config),
    ("transformers.models.auto.modeling_auto", ("onellm.config", "onellm.model.onellm"), _model),
    ("transformers.models.auto.processing_auto", ("onellm.config", "onellm.processing"), _processor),
)
_WATCHED = {name for auto, ours, _ in _REGISTRATIONS for name in (auto, *ours)}
_finished: set[str] = set()
_done: set[int] = set()


def _run_ready() -> None:
    for k, (auto, ours, register) in enumerate(_REGISTRATIONS):
        if k in _done or auto not in _finished:
            continue
        # our modules must not be in the middle of their own import; absent ones are imported by ``register``
        if any(name in sys.modules and name not in _finished for name in ours):
            continue
        _done.add(k)
        register(sys.modules[auto])


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds the watched modules with the normal machinery and runs the ready registrations after each executed."""

    def find_spec(self, name, path, target=None):
        if name not in _WATCHED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module, _original=original, _name=name):
            _original(module)
            _finished.add(_name)
            _run_ready()

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    _finished.update(name for name in _WATCHED if name in sys.modules and name.startswith("transformers."))
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())
    _run_ready()
