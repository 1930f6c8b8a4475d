"""OneLLM: one framework to align all modalities with language (CVPR 2024), on HF transformers + open_clip."""
from .config import OneLLMConfig
from .modality import Modality
from .model import OneLLM

__version__ = "0.1.0"
__all__ = ["OneLLM", "OneLLMConfig", "Modality", "__version__"]
