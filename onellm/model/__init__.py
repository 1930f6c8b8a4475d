from .onellm import OneLLM, OneLLMOutput
from .tokenizers import input_shape, num_tokens

__all__ = ["OneLLM", "OneLLMOutput", "input_shape", "num_tokens"]
