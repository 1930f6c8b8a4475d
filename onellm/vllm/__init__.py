"""OneLLM on vLLM (pinned: vLLM 0.32.0, whose model / multimodal-processor API is internal and changes between
releases): an out-of-tree model, its multimodal processor and the plugin that registers them.

Importing this package imports nothing of vLLM; the modules that need it are :mod:`.model`, :mod:`.processor`,
:mod:`.hf_config` and :mod:`.plugin`. :mod:`.clip` (the CLIP vision tower in plain torch, no open_clip / torchvision)
and :mod:`.encoder` (tokenizers + CLIP + UPM without the LLM) run in any environment. See ``docs/vllm.md``.
"""

VLLM_VERSION = "0.32.0"  # the release this package is written and tested against
ARCHITECTURE = "OneLLMForVLLM"  # the vLLM model class name (hf_config.architectures)
CONFIG_FORMAT = "onellm"  # LLM(..., config_format="onellm"): our model directories' config parser
