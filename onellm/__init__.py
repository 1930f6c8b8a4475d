"""OneLLM: one framework to align all modalities with language (CVPR 2024), on HF transformers + open_clip."""
from .config import OneLLMConfig
from .modality import Modality

__version__ = "0.1.0"
__all__ = ["OneLLM", "OneLLMConfig", "Modality", "__version__"]


def __getattr__(name: str):
    # The model pulls in torch and transformers: import it only when it is asked for, so light tools
    # (manifest validation, data_prep scripts) start fast.
    if name == "OneLLM":
        from .model import OneLLM

        return OneLLM
    raise AttributeError(f"module 'onellm' has no attribute {name!r}")
