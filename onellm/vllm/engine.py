"""Running a OneLLM model directory on vLLM: engine construction, request building, generation.

    from onellm.vllm.engine import OneLLMEngine
    engine = OneLLMEngine("models/onellm-7b", dtype="bfloat16")
    out = engine.generate([engine.request("Describe the video.", [("video", "clip.mp4"), ("audio", "clip.wav")])],
                          GenerationConfig(temperature=0, max_new_tokens=32))

Prompts are the library's (:func:`onellm.data.template.encode_prompt`, ``config.legacy_prompt`` honoured) with every
input's block after BOS in the order of the inputs (the HF path's layout), written as placeholder ids; items may be
tensors, file paths or manifest input dicts (see :mod:`onellm.vllm.processor`). Decoding follows
:class:`onellm.generation.GenerationConfig`: greedy at temperature 0, else temperature + top-p; stop at EOS or the
template separator; the answer is the text up to the separator.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

DEFAULT_KV_CACHE_GIB = 2
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja")


def tokenizer_directory(model_dir: Path, text_config) -> Path:
    """A temporary folder with the model's tokenizer files and the LLaMA ``config.json`` of its decoder.

    vLLM loads the tokenizer with ``AutoTokenizer`` after trying ``AutoConfig`` on the same folder; a OneLLM
    ``config.json`` is not a transformers config, so it would log errors and retry. The folder is removed at exit."""
    import atexit
    import shutil
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="onellm-vllm-tokenizer-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    found = [n for n in TOKENIZER_FILES if (model_dir / n).is_file()]
    if not found:
        raise FileNotFoundError(f"{model_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    for name in found:
        shutil.copyfile(model_dir / name, out / name)
    text_config.to_json_file(str(out / "config.json"))
    return out


@dataclass
class EngineOutput:
    texts: list[str]  # answers: new text up to the separator, stripped
    raw_texts: list[str]
    token_ids: list[list[int]]  # new tokens per request, EOS removed (as onellm.generation.generate)


def expanded_prompt(text_ids: Sequence[int], modalities: Sequence[str], config) -> list[int]:
    """``[bos] [block of input 1] [block of input 2] ... text`` with each block K + 2 placeholder ids."""
    from .encoder import block_length, placeholder_ids

    ids, n = placeholder_ids(config), block_length(config)
    blocks = [i for m in modalities for i in [ids[m]] * n]
    return list(text_ids[:1]) + blocks + list(text_ids[1:])


def group_items(inputs: Sequence[tuple[str, Any]]) -> dict[str, list[Any]]:
    """[(modality, item), ...] -> ``multi_modal_data`` (per modality, items in input order)."""
    data: dict[str, list[Any]] = {}
    for modality, item in inputs:
        data.setdefault(modality, []).append(item)
    return data


CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM 0.32's CPU attention backend


def check_head_size(config) -> None:
    """vLLM's CPU attention supports only some head sizes (a tiny preset's 16 is not one): fail with the reason."""
    from vllm.platforms import current_platform

    head = config.llm.hidden_size // config.llm.num_heads
    if current_platform.is_cpu() and head not in CPU_HEAD_SIZES:
        raise ValueError(f"vLLM's CPU attention supports head sizes {CPU_HEAD_SIZES}; this model's LLM has "
                         f"{config.llm.hidden_size} / {config.llm.num_heads} heads = {head}")


def sampling_params(gen, eos_token_id: int, seed: int | None = None):
    """vLLM's ``SamplingParams`` for a :class:`onellm.generation.GenerationConfig`, meaning what the HF engine does
    with it: greedy at temperature <= 0, else temperature + nucleus (top-p) sampling with no top-k; at most
    ``max_new_tokens``, at least ``min_new_tokens``; stop at EOS or at a stop string (the template separator
    "###"). ``seed``: this request's sampling seed (None: vLLM's global generator)."""
    from vllm import SamplingParams

    greedy = gen.temperature <= 0
    return SamplingParams(
        temperature=0.0 if greedy else float(gen.temperature), top_p=1.0 if greedy else float(gen.top_p),
        top_k=0, min_p=0.0, repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0,
        max_tokens=int(gen.max_new_tokens), min_tokens=int(getattr(gen, "min_new_tokens", 0) or 0),
        stop=list(gen.stop_strings or ()), stop_token_ids=[int(eos_token_id)], seed=None if greedy else seed,
        skip_special_tokens=True)


def request_seed(seed: int, request_id: str) -> int:
    """The sampling seed of one request: a function of the run's seed and the request id only, so a sampled
    answer does not depend on the chunk, the rank or the resume that generated it."""
    import zlib

    return zlib.crc32(f"{int(seed)}:{request_id}".encode()) & 0x7FFFFFFF


def sample_request(sample) -> dict[str, Any]:
    """A :class:`onellm.processing.PackedSample` (what ``RequestDataset`` yields: placeholder blocks already
    expanded in ``input_ids``, loaded input tensors) -> a vLLM prompt dict: ``prompt_token_ids`` = its
    ``input_ids``, ``multi_modal_data`` = its tensors grouped by modality, in reading order."""
    req: dict[str, Any] = {"prompt_token_ids": [int(t) for t in sample.input_ids]}
    if sample.inputs:
        req["multi_modal_data"] = group_items(sample.inputs)
    return req


def resolve_dtype(dtype: str = "auto") -> str:
    """The inference dtypes' names (``auto``, ``fp32``, ``bf16``, ``fp16`` and the long forms) -> vLLM's. ``auto``
    means what it means for the HF engine: bf16 on a GPU that has it, fp16 on an older GPU, fp32 on a CPU (vLLM's
    own "auto" would take the weights' dtype)."""
    table = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
             "fp16": "float16", "float16": "float16", "half": "float16"}
    if dtype in table:
        return table[dtype]
    if dtype != "auto":
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, fp32, bf16 or fp16")
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return "float32"
    return "bfloat16" if current_platform.has_device_capability(80) else "float16"


class OneLLMEngine:
    """A vLLM ``LLM`` on a OneLLM model directory, with the library's tokenizer, template and config."""

    def __init__(self, model_dir: str | os.PathLike, dtype: str = "auto", kv_cache_gib: float | None = None,
                 max_num_seqs: int = 64, seed: int = 0, **llm_kwargs: Any):
        from onellm.checkpoint import read_config
        from onellm.data.text import load_tokenizer

        from .plugin import ensure_entry_point_for_subprocesses, register

        register()
        self.in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") == "0"
        if not self.in_process:
            ensure_entry_point_for_subprocesses()  # the engine core runs in another process
        from vllm import LLM

        self.model_dir = Path(model_dir)
        self.max_num_seqs = int(max_num_seqs)
        self.config = read_config(self.model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        if kv_cache_gib is not None:  # vLLM reads a whole number of GiB
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(round(float(kv_cache_gib)))))
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_KV_CACHE_GIB))
        llm_kwargs.setdefault("max_model_len", min(self.config.max_seq_len + 256,
                                                   self.config.llm.max_position_embeddings))
        from .hf_config import vllm_config_from_onellm

        check_head_size(self.config)
        tokenizer_dir = tokenizer_directory(self.model_dir, vllm_config_from_onellm(self.config).text_config)
        self.llm = LLM(model=str(self.model_dir), tokenizer=str(tokenizer_dir), config_format="onellm",
                       dtype=dtype, seed=seed, max_num_seqs=max_num_seqs, **llm_kwargs)

    def prompt_ids(self, question: str, modalities: Sequence[str], history: Sequence[tuple[str, str]] = ()
                   ) -> list[int]:
        from onellm.data.template import encode_prompt

        ids = encode_prompt(self.tokenizer, question, history, legacy=bool(self.config.legacy_prompt))
        return expanded_prompt(ids, modalities, self.config)

    def request(self, question: str, inputs: Sequence[tuple[str, Any]] = (),
                history: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """A vLLM prompt dict for a question about ``inputs`` [(modality, tensor | path | input dict), ...]."""
        from .encoder import model_modalities

        own = model_modalities(self.config)
        bad = [m for m, _ in inputs if m not in own]
        if bad:
            raise ValueError(f"this model has no {bad} modality (its modalities: {', '.join(own)})")
        req: dict[str, Any] = {"prompt_token_ids": self.prompt_ids(question, [m for m, _ in inputs], history)}
        if inputs:
            req["multi_modal_data"] = group_items(inputs)
        return req

    def generate(self, requests: Sequence[dict[str, Any]], gen=None, seed: "int | Sequence[int | None] | None" = None,
                 use_tqdm: bool = False) -> EngineOutput:
        """Answers for ``requests`` in one ``LLM.generate`` call (vLLM schedules and batches all of them).
        ``seed``: one sampling seed for every request, or one per request (ignored when greedy)."""
        from onellm.data.template import extract_answer
        from onellm.generation import GenerationConfig

        gen = gen or GenerationConfig()
        vocab = self.config.llm.vocab_size
        for i, r in enumerate(requests):  # placeholders without items would index past the embedding table
            if "multi_modal_data" not in r and any(t >= vocab for t in r.get("prompt_token_ids", ())):
                raise ValueError(f"request {i} has placeholder ids but no multi_modal_data")
        eos = self.config.llm.eos_token_id
        if isinstance(seed, (list, tuple)):
            if len(seed) != len(requests):
                raise ValueError(f"{len(seed)} seeds for {len(requests)} requests")
            params = [sampling_params(gen, eos, s) for s in seed]
        else:
            params = sampling_params(gen, eos, seed)
        outs = self.llm.generate(list(requests), params, use_tqdm=use_tqdm)
        ids = []
        for o in outs:
            row = list(o.outputs[0].token_ids)
            ids.append(row[: row.index(eos)] if eos in row else row)
        raw = [self.tokenizer.decode(x) for x in ids]
        return EngineOutput([extract_answer(r) for r in raw], raw, ids)


# ------------------------------------------------------------------------------------------------------------
# `onellm infer --engine vllm` / `onellm eval --engine vllm` (onellm.inference.run_inference)

def narrow_devices_for_rank(local_rank: int, tensor_parallel_size: int) -> str | None:
    """Under torchrun ranks (``--data-parallel-size``): give this rank's engine its own GPUs, ``local_rank * tp ...
    (local_rank + 1) * tp - 1`` of those visible, through ``CUDA_VISIBLE_DEVICES`` (read by the engine-core
    process vLLM starts). Nothing is done on a CPU or when the visible devices are already exactly ``tp``.
    Returns the value set, or None."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d for d in visible.split(",") if d.strip()]
    else:
        devices = [str(i) for i in range(current_platform.device_count())]
    if len(devices) == tensor_parallel_size:
        return None
    mine = devices[local_rank * tensor_parallel_size:(local_rank + 1) * tensor_parallel_size]
    if len(mine) != tensor_parallel_size:
        raise ValueError(f"rank {local_rank} needs {tensor_parallel_size} GPU(s) (--tensor-parallel-size) but only "
                         f"{len(devices)} are visible for all ranks")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
    return os.environ["CUDA_VISIBLE_DEVICES"]


def engine_for_inference(model_dir: str | os.PathLike, *, dtype: str = "auto", tensor_parallel_size: int = 1,
                         max_num_seqs: int = 64, kv_cache_gib: float | None = None, max_new_tokens: int = 0,
                         seed: int = 0, world_size: int = 1, local_rank: int = 0, **llm_kwargs: Any
                         ) -> OneLLMEngine:
    """The engine ``run_inference(engine="vllm")`` answers with: ``dtype`` as the HF engine means it
    (:func:`resolve_dtype`), a context of ``max_seq_len`` + the longest answer asked for (so vLLM never ends an
    answer the HF engine would go on with). With ``world_size`` > 1 (torchrun ranks, each its own engine) the
    engine core always runs in its own, spawned process: the rank's ``torch.distributed`` group (gloo, for the
    merge) must not be the one vLLM joins."""
    from onellm.checkpoint import read_config

    if world_size > 1:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
        os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
        narrow_devices_for_rank(local_rank, tensor_parallel_size)
    config = read_config(Path(model_dir))
    limit = config.llm.max_position_embeddings
    llm_kwargs.setdefault("max_model_len", min(limit, config.max_seq_len + max(256, int(max_new_tokens))))
    if tensor_parallel_size != 1:
        llm_kwargs["tensor_parallel_size"] = int(tensor_parallel_size)
    return OneLLMEngine(model_dir, dtype=resolve_dtype(dtype), kv_cache_gib=kv_cache_gib,
                        max_num_seqs=max_num_seqs, seed=seed, **llm_kwargs)
