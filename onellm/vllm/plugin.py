"""vLLM plugin entry point (group ``vllm.general_plugins``, name ``onellm``): registers the OneLLM model class and
the ``config_format="onellm"`` config parser in every vLLM process (front end and engine core alike).

It also wraps vLLM's prompt validation (``InputProcessor._validate_model_input``) for OneLLM models only: vLLM
rejects any token id beyond the tokenizer and the model vocabulary, and OneLLM's placeholder ids are exactly that
(``llm.vocab_size + i``, never embedded). Such ids are accepted where they lie inside a multimodal placeholder range
of the request and rejected everywhere else (a placeholder without an input item would index past the embedding
table inside the engine); every other check runs unchanged.

vLLM calls :func:`register` itself once the entry point is installed (``setup.py``:
``entry_points={"vllm.general_plugins": ["onellm = onellm.vllm.plugin:register"]}``); calling it by hand is
harmless (it is idempotent) and is what in-process use needs before the entry point exists.
"""
from __future__ import annotations

from . import ARCHITECTURE, CONFIG_FORMAT, VLLM_VERSION

DEFAULT_STOP_ENV = "ONELLM_SERVE_DEFAULT_STOP"  # set by `onellm serve`: see patch_default_stop

ENTRY_POINT = "onellm.vllm.plugin:register"
_registered = False


def entry_point_installed() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value == ENTRY_POINT for ep in entry_points(group="vllm.general_plugins"))


def ensure_entry_point_for_subprocesses() -> str | None:
    """Make the plugin visible to vLLM's engine-core and worker processes (which load plugins from entry points
    only) when the installed ``onellm`` distribution does not declare it yet: a throw-away dist-info with the entry
    point, put on ``PYTHONPATH`` and ``sys.path`` (multiprocessing's spawn hands the parent's ``sys.path`` to its
    children). A no-op once setup.py declares the entry point. Returns the folder added, or None."""
    import atexit
    import os
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    if entry_point_installed():
        return None
    root = Path(tempfile.mkdtemp(prefix="onellm-vllm-plugin-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    dist = root / "onellm_vllm_plugin-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: onellm-vllm-plugin\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[vllm.general_plugins]\nonellm = {ENTRY_POINT}\n")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    sys.path.append(str(root))
    return str(root)


def check_version() -> None:
    import vllm

    if vllm.__version__.split("+")[0] != VLLM_VERSION:
        raise RuntimeError(f"onellm.vllm is written for vLLM {VLLM_VERSION} (its model / multimodal-processor API is "
                           f"internal and changes between releases); this is vLLM {vllm.__version__}")


def register() -> None:
    global _registered
    if _registered:
        return
    check_version()
    from transformers import AutoConfig
    from vllm import ModelRegistry
    from vllm.transformers_utils.config import _CONFIG_FORMAT_TO_CONFIG_PARSER, register_config_parser

    from .hf_config import OneLLMVllmConfig, make_config_parser

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, "onellm.vllm.model:OneLLMForVLLM")
    if CONFIG_FORMAT not in _CONFIG_FORMAT_TO_CONFIG_PARSER:
        register_config_parser(CONFIG_FORMAT)(make_config_parser())
    AutoConfig.register(OneLLMVllmConfig.model_type, OneLLMVllmConfig, exist_ok=True)
    _patch_input_validation()
    import os

    if os.environ.get(DEFAULT_STOP_ENV):  # `onellm serve`: requests without "stop" stop at "###"
        patch_default_stop()
    _registered = True


def _patch_input_validation() -> None:
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.engine.input_processor import InputProcessor

    from .hf_config import OneLLMVllmConfig

    original = InputProcessor._validate_model_input
    if getattr(original, "_onellm_wrapped", False):
        return

    def _validate_model_input(self, prompt_input, prompt_type="decoder"):
        config = self.model_config.hf_config
        if isinstance(config, OneLLMVllmConfig) and prompt_input.get("type") != "embeds":
            ids = list(prompt_input["prompt_token_ids"])
            vocab = int(config.text_config.vocab_size)
            inside = [False] * len(ids)
            for ranges in (prompt_input.get("mm_placeholders") or {}).values():
                for r in ranges:
                    inside[r.offset:r.offset + r.length] = [True] * r.length
            stray = [i for i, t in enumerate(ids) if t >= vocab and not inside[i]]
            if stray:
                raise VLLMValidationError(
                    f"token id {ids[stray[0]]} at position {stray[0]} ({len(stray)} such positions) is out of the "
                    f"vocabulary ({vocab}) and not part of a multimodal item: OneLLM placeholder ids "
                    f"{dict(config.placeholder_ids)} need their input items in multi_modal_data",
                    parameter="prompt_token_ids")
            prompt_input = dict(prompt_input)
            prompt_input["prompt_token_ids"] = [0 if inside[i] else t for i, t in enumerate(ids)]
        return original(self, prompt_input, prompt_type=prompt_type)

    _validate_model_input._onellm_wrapped = True
    InputProcessor._validate_model_input = _validate_model_input


def patch_default_stop() -> None:
    """Chat / completion requests that give no ``stop`` stop at the template separator (as the HF engine does)."""
    from onellm.data.template import SEPARATOR

    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    for cls in (ChatCompletionRequest, CompletionRequest):
        original = cls.to_sampling_params
        if getattr(original, "_onellm_stop", False):
            continue

        def to_sampling_params(self, *args, __original=original, **kwargs):
            if not self.stop:
                self.stop = [SEPARATOR]
            return __original(self, *args, **kwargs)

        to_sampling_params._onellm_stop = True
        cls.to_sampling_params = to_sampling_params
