"""OneLLM: one framework to align all modalities with language (CVPR 2024), on HF transformers + open_clip."""
from ._auto import install as _install_auto_classes
from .version import __version__

__all__ = ["OneLLM", "OneLLMConfig", "OneLLMForConditionalGeneration", "OneLLMProcessor", "__version__"]

_install_auto_classes()  # AutoConfig / AutoModelForCausalLM / AutoProcessor learn "onellm" when transformers loads them

# The model pulls in torch and transformers: names are imported when they are asked for, so light tools
# (manifest validation, --help, data_prep scripts) start fast.
_LAZY = {"OneLLMConfig": ("config", "OneLLMConfig"), "OneLLM": ("model.onellm", "OneLLM"),
         "OneLLMForConditionalGeneration": ("model.onellm", "OneLLMForConditionalGeneration"),
         "OneLLMProcessor": ("processing", "OneLLMProcessor")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'onellm' has no attribute {name!r}")
