from .onellm import OneLLM, OneLLMForConditionalGeneration, OneLLMOutput
from .tokenizers import input_shape, num_tokens

__all__ = ["OneLLM", "OneLLMForConditionalGeneration", "OneLLMOutput", "input_shape", "num_tokens"]
