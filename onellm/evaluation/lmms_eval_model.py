"""The lmms-eval model adapter: ``lmms-eval --model onellm --model_args pretrained=DIR,...`` (docs/lmms_eval.md).

lmms-eval (0.7.x, the optional extra ``pip install -e ".[lmms]"``) finds this class through the Python entry-point
group ``lmms_eval.models`` (``onellm = onellm.evaluation.lmms_eval_model:lmms_eval_manifest``), the registration
lmms-eval documents for external models (``lmms_eval/models/registry_v2.py``). Every request goes through the
library's own path, so an answer here is ``onellm infer --temperature 0``'s answer on the same input and prompt:

* **Inputs** (what a task's ``doc_to_visual`` returns, one list per document, in order): a PIL image -> the image
  loader's eval transform on it (``eval_crop`` + ``to_clip_tensor``, what ``load_image`` does after decoding the
  file); an audio dict ``{"array", "sampling_rate"}`` (HF datasets' Audio feature, lmms-eval's audio tasks) -> the
  audio loader's fbank, computed from the array (nothing is written to disk); a file path (``str`` /
  ``os.PathLike``) -> the loader of the modality whose extensions it has (video ``.mp4`` ..., image, audio, ...);
  a manifest input dict ``{"modality": m, "path": ..., <options>}`` -> ``processor.load_input(m, dict)``, which
  reaches every OneLLM modality (point clouds, depth, IMU, fMRI) from a custom task. Each input becomes one block
  after BOS, in the order given (the released layout).
* **Prompt**: the OneLLM chat template around the context lmms-eval built (``doc_to_text`` with the task's
  pre/post prompts; ``lmms_eval_specific_kwargs`` are looked up under the model name ``onellm``, else
  ``default``); ``template=none`` gives ``[bos] context`` for alignment-only models, as ``onellm infer``.
* **Generation**: :func:`onellm.generation.generate` on left-padded batches of ``batch_size`` requests (same task
  and generation kwargs, similar prompt lengths). ``max_new_tokens`` (default 128), ``temperature`` (default 0 =
  greedy; ``do_sample: false`` is greedy too), ``top_p`` (default 0.75, the released scripts') and ``until`` are
  honoured; the answer is the new text up to the template separator "###" and before the first ``until`` string
  (which also stop generation), stripped: ``onellm infer``'s answer cut at ``until``. ``num_beams`` > 1 is not
  supported (a warning; greedy/sampling as above).
* **loglikelihood** (``output_type: loglikelihood`` / ``multiple_choice``): ``(nll, is_greedy)``: the negative
  log-likelihood of the continuation's tokens after the chat prompt, summed over them (the continuation stripped,
  as an answer is encoded in the template), and whether greedy decoding would produce exactly them. A loss, not a
  log-likelihood, because lmms-eval 0.7's multiple_choice picks the *smallest* value (``np.argmin``: its own models
  return losses); the lowest NLL is lm-eval's ``acc`` choice, ``acc_norm`` divides it by the choice's length.
* **generate_until_multi_round**: rounds as lmms-eval's models run them (the task's ``doc_to_text`` gives each
  next round's visuals and context), one request at a time.
* ``engine=vllm``: the same packed prompts and preprocessed input tensors through
  :class:`onellm.vllm.engine.OneLLMEngine` (``sample_request``, as ``onellm infer --engine vllm``; the vLLM
  environment, docs/vllm.md); generation only (loglikelihood needs ``engine=hf``).

Model arguments (``--model_args key=value,...``): ``pretrained`` (the model directory, required), ``device``
(auto | cpu | cuda | cuda:N; auto = this rank's GPU, else CPU), ``dtype`` (auto | fp32 | bf16 | fp16), ``batch_size``
(default 1; taken over lmms-eval's ``--batch_size`` when given here), ``template`` (chat | none), ``engine``
(hf | vllm), ``skip_bad_inputs`` (default true: a request whose input file cannot be loaded, or whose prompt is
longer than the model's ``max_seq_len``, is answered "" with a warning, as ``onellm infer`` writes an error line
and goes on; false raises), ``max_new_tokens`` (the default when a task gives none), ``kv_cache_gib`` /
``max_num_seqs`` / ``tensor_parallel_size`` (vLLM only), ``seed`` (vLLM's per-request sampling seeds).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

try:
    from lmms_eval.api.instance import Instance
    from lmms_eval.api.model import lmms
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("onellm.evaluation.lmms_eval_model needs lmms-eval: pip install -e \".[lmms]\" (lmms-eval "
                      f"0.7.x; see docs/lmms_eval.md) ({exc})") from exc

MODEL_NAME = "onellm"  # the name on lmms-eval's command line (--model onellm)
CLASS_PATH = "onellm.evaluation.lmms_eval_model.OneLLMLmms"
DEFAULT_MAX_NEW_TOKENS = 128  # as onellm infer
DEFAULT_TOP_P = 0.75  # the released scripts' (onellm.generation.GenerationConfig)
# generation kwargs lmms-eval tasks set that need nothing here (greedy/sampling is decided by temperature/do_sample)
QUIET_GEN_KWARGS = {"until", "max_new_tokens", "max_gen_toks", "temperature", "top_p", "do_sample", "num_beams",
                    "top_k", "use_cache", "image_aspect_ratio", "repetition_penalty"}
PATH_MODALITY_ORDER = ("video", "image", "audio")  # which loader a bare file path goes to, first match by extension


def lmms_eval_manifest():
    """The entry point (group ``lmms_eval.models``): lmms-eval's manifest naming this adapter ``onellm``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_NAME, simple_class_path=CLASS_PATH)


def register() -> None:
    """Register the adapter in an already imported lmms-eval (for a process where the ``onellm`` distribution's
    entry point is not installed, e.g. a source checkout run without ``pip install -e``)."""
    from lmms_eval.models import MODEL_REGISTRY_V2

    MODEL_REGISTRY_V2.register_manifest(lmms_eval_manifest(), overwrite=True)


# ----------------------------------------------------------------------------------------------------------------
# Arguments


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "y", "on"}:
        return True
    if text in {"0", "false", "no", "n", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _as_optional_float(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null"}):
        return None
    return float(value)


@dataclass(frozen=True)
class GenerationRequest:
    """One task's generation kwargs, parsed: the options of :class:`onellm.generation.GenerationConfig` + ``until``."""

    max_new_tokens: int
    temperature: float
    top_p: float
    until: tuple[str, ...]
    ignored: tuple[str, ...] = ()

    def config(self):
        from ..data.template import SEPARATOR
        from ..generation import GenerationConfig

        stops = tuple(dict.fromkeys((SEPARATOR, *self.until)))
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                                stop_strings=stops)


def parse_generation_kwargs(kwargs: dict[str, Any] | None, default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
                            ) -> GenerationRequest:
    """lmms-eval ``generation_kwargs`` -> our sampling options. ``temperature`` 0 (the default) or ``do_sample:
    false`` is greedy; ``top_p`` applies when sampling (default 0.75); ``until`` is a string or a list."""
    kwargs = dict(kwargs or {})
    until = kwargs.get("until")
    if until is None:
        until = []
    elif isinstance(until, str):
        until = [until]
    elif not isinstance(until, (list, tuple)):
        raise ValueError(f"generation_kwargs 'until' must be a string or a list, got {type(until).__name__}")
    until = tuple(u for u in until if isinstance(u, str) and u)
    max_new = kwargs.get("max_new_tokens", kwargs.get("max_gen_toks"))
    max_new = default_max_new_tokens if max_new is None else int(max_new)
    temperature = _as_optional_float(kwargs.get("temperature"))
    temperature = 0.0 if temperature is None else temperature
    if "do_sample" in kwargs and kwargs["do_sample"] is not None and not _as_bool(kwargs["do_sample"]):
        temperature = 0.0
    top_p = _as_optional_float(kwargs.get("top_p"))
    top_p = DEFAULT_TOP_P if top_p is None else top_p
    ignored = [k for k in kwargs if k not in QUIET_GEN_KWARGS]
    beams = kwargs.get("num_beams")
    if beams is not None and int(beams) > 1:
        ignored.append(f"num_beams={beams}")
    return GenerationRequest(max_new, temperature, top_p, until, tuple(ignored))


def answer_text(raw: str, until: Sequence[str] = ()) -> str:
    """The answer in the generated text: up to the template separator "###" and the first ``until`` string,
    stripped (without ``until`` this is ``onellm infer``'s answer, :func:`onellm.data.template.extract_answer`)."""
    from ..data.template import SEPARATOR

    text = raw.split(SEPARATOR)[0]
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text.strip()


# ----------------------------------------------------------------------------------------------------------------
# Inputs


def flatten_visuals(visuals: Any) -> list[Any]:
    """``doc_to_visual``'s result -> a flat list (``None`` -> [], nested lists flattened, one item -> [item])."""
    if visuals is None:
        return []
    if not isinstance(visuals, (list, tuple)):
        return [visuals]
    out: list[Any] = []
    for v in visuals:
        out.extend(flatten_visuals(v) if isinstance(v, (list, tuple)) else [v])
    return out


def _is_audio_item(item: Any) -> bool:
    """An HF-datasets audio value: a dict with "array" and "sampling_rate", or datasets' decoder object that
    answers the same keys."""
    if isinstance(item, dict):
        return "array" in item and "sampling_rate" in item
    return "AudioDecoder" in type(item).__name__


def audio_from_array(array: Any, sampling_rate: int, config) -> "torch.Tensor":
    """A waveform (``(T,)`` mono, or ``(C, T)`` / ``(T, C)`` with the channel axis the shorter one) at
    ``sampling_rate`` -> the audio loader's eval fbank ``(1, mel_bins, frames)``: the steps of
    ``onellm.data.loaders.audio.load_audio`` after it has read the file (resample the whole waveform to 16 kHz,
    subtract its global mean, kaldi fbank of channel 0, zero-pad / truncate to ``frames``, AudioSet
    normalisation), so an array read from a file gives the file's tensor exactly."""
    import numpy as np
    import torch

    from ..data.errors import InputError
    from ..data.loaders.audio import waveform_features

    data = np.asarray(array, dtype=np.float32)
    if data.ndim == 1:
        data = data[None]
    elif data.ndim == 2:
        if data.shape[0] > data.shape[1]:  # (T, C) as soundfile reads it
            data = data.T
    else:
        raise InputError(None, f"audio array must be 1-D or 2-D, got shape {tuple(data.shape)}")
    waveform = torch.from_numpy(np.ascontiguousarray(data))  # (C, T)
    inputs = config.inputs.audio
    return waveform_features(waveform, int(sampling_rate), train=False, mel_bins=inputs.mel_bins,
                             frames=inputs.frames).float()


def image_from_pil(image, config) -> "torch.Tensor":
    """A PIL image -> the image loader's eval tensor (``load_image`` after decoding: RGB, ``eval_crop``,
    ``to_clip_tensor``)."""
    from ..data.loaders.image import eval_crop, to_clip_tensor

    return to_clip_tensor(eval_crop(image.convert("RGB"), config.vision.image_size)).float()


def modality_of_path(path: str | os.PathLike, modalities: Sequence[str]) -> str:
    """The modality whose loader reads this file extension (video, image, audio first, then the model's others)."""
    from ..data.errors import InputError
    from ..data.loaders import supported_extensions

    suffix = Path(path).suffix.lower()
    order = [m for m in PATH_MODALITY_ORDER if m in modalities] + [m for m in modalities
                                                                    if m not in PATH_MODALITY_ORDER]
    for m in order:
        if suffix in supported_extensions(m):
            return m
    raise InputError(path, f"no modality of this model reads {suffix or 'files without an extension'!r} files "
                           f"(its modalities: {', '.join(modalities)})")


class UnsupportedVisual(TypeError):
    """A ``doc_to_visual`` item this adapter cannot map to a OneLLM modality (a configuration error: raised)."""


def to_model_inputs(visuals: Sequence[Any], processor) -> list[tuple[str, Any]]:
    """lmms-eval visuals -> [(modality, tensor)] in order, with the library's eval preprocessing."""
    from PIL import Image

    config = processor.config
    modalities = list(config.modalities)
    out: list[tuple[str, Any]] = []

    def need(modality: str, what: str) -> None:
        if modality not in modalities:
            raise UnsupportedVisual(f"the task gives {what}, but this model has no {modality} modality "
                                    f"(its modalities: {', '.join(modalities)})")

    for item in visuals:
        if isinstance(item, Image.Image):
            need("image", "an image")
            out.append(("image", image_from_pil(item, config)))
        elif _is_audio_item(item):
            need("audio", "an audio waveform")
            out.append(("audio", audio_from_array(item["array"], item["sampling_rate"], config)))
        elif isinstance(item, dict) and "modality" in item and "path" in item:
            from ..modalities import resolve

            modality = resolve(item["modality"])
            need(modality, f"a {modality} input")
            out.append((modality, processor.load_input(modality, item)))
        elif isinstance(item, dict) and "path" in item and item.get("path"):
            modality = modality_of_path(item["path"], modalities)
            out.append((modality, processor.load_input(modality, str(item["path"]))))
        elif isinstance(item, (str, os.PathLike)):
            modality = modality_of_path(item, modalities)
            out.append((modality, processor.load_input(modality, str(item))))
        else:
            raise UnsupportedVisual(
                f"cannot use a {type(item).__module__}.{type(item).__name__} from doc_to_visual: the adapter takes "
                "PIL images, audio dicts {'array', 'sampling_rate'}, file paths (video, image, audio, ...) and "
                "manifest input dicts {'modality', 'path', ...}")
    return out


# ----------------------------------------------------------------------------------------------------------------
# The adapter


@dataclass
class _Prepared:
    index: int  # position in the request list
    prompt_ids: list[int]
    inputs: list[tuple[str, Any]] | None = None  # loaded per batch
    extra: dict[str, Any] = field(default_factory=dict)


class OneLLMLmms(lmms):
    """lmms-eval's ``lmms`` for a OneLLM model directory (module docstring)."""

    is_simple = True

    def __init__(self, pretrained: str, device: str | None = "auto", dtype: str = "auto", batch_size: int | str = 1,
                 template: str = "chat", engine: str = "hf", skip_bad_inputs: Any = True,
                 max_new_tokens: int | str = DEFAULT_MAX_NEW_TOKENS, kv_cache_gib: float | str | None = None,
                 max_num_seqs: int | str = 64, tensor_parallel_size: int | str = 1, seed: int | str = 0,
                 **kwargs: Any) -> None:
        super().__init__()
        from loguru import logger

        from ..inference import resolve_device, resolve_dtype

        self._log = logger
        unknown = sorted(k for k in kwargs if k not in ("max_batch_size",))
        if unknown:
            logger.warning(f"onellm: ignoring unknown model_args {unknown}")
        if not pretrained:
            raise ValueError("onellm: model_args needs pretrained=<OneLLM model directory>")
        self.pretrained = str(pretrained)
        if not Path(self.pretrained).is_dir():
            raise FileNotFoundError(f"onellm: pretrained={self.pretrained} is not a model directory (everything is "
                                    "local: no hub downloads)")
        if str(batch_size).startswith("auto"):
            logger.warning("onellm: batch_size=auto is not supported; using 1")
            batch_size = 1
        self.batch_size_per_gpu = int(batch_size)
        if self.batch_size_per_gpu < 1:
            raise ValueError(f"onellm: batch_size must be >= 1, got {batch_size}")
        if template not in ("chat", "none"):
            raise ValueError(f"onellm: template must be chat or none, got {template!r}")
        self.template = template
        self.engine_name = str(engine).lower()
        if self.engine_name not in ("hf", "vllm"):
            raise ValueError(f"onellm: engine must be hf or vllm, got {engine!r}")
        self.skip_bad_inputs = _as_bool(skip_bad_inputs)
        self.default_max_new_tokens = int(max_new_tokens)
        self.seed = int(seed)
        self._warned: set[str] = set()
        self.failures: list[tuple[str, str]] = []  # (request, problem) answered "" under skip_bad_inputs

        self._rank = int(os.environ.get("RANK", 0))
        self._world_size = int(os.environ.get("WORLD_SIZE", 1))
        if device is None or str(device) == "auto":
            dev = resolve_device("auto")
        else:
            dev = resolve_device(str(device))
            if dev.type == "cuda" and dev.index is None and self._world_size > 1:
                dev = resolve_device("auto")  # one GPU per rank
        self._device = dev
        self._dtype = resolve_dtype(str(dtype), dev)

        from ..processing import OneLLMProcessor

        self.processor = OneLLMProcessor.from_pretrained(self.pretrained)
        self.vllm = None
        self.model = None
        if self.engine_name == "hf":
            from ..model import OneLLMForConditionalGeneration

            self.model = OneLLMForConditionalGeneration.from_pretrained(self.pretrained, device=dev,
                                                                        dtype=self._dtype)
        else:
            self.vllm = self._make_vllm_engine(str(dtype), kv_cache_gib, int(max_num_seqs),
                                               int(tensor_parallel_size))
        self.config = self.processor.config

    # lmms-eval reads these
    @property
    def device(self):
        return self._device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "OneLLMLmms":
        """As lmms-eval's, but a ``batch_size`` / ``device`` in ``--model_args`` wins over ``--batch_size`` /
        ``--device`` (lmms-eval passes both, and its ``--batch_size`` always has a value)."""
        from lmms_eval import utils

        args = utils.simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in args}
        return cls(**args, **extra)

    def _make_vllm_engine(self, dtype: str, kv_cache_gib, max_num_seqs: int, tensor_parallel_size: int):
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise ImportError("onellm: engine=vllm needs vLLM, which lives in its own environment (.venv-vllm, "
                              "docs/vllm.md); install lmms-eval there too (docs/lmms_eval.md)") from exc
        from ..vllm.engine import OneLLMEngine, resolve_dtype

        kwargs = {"tensor_parallel_size": tensor_parallel_size} if tensor_parallel_size != 1 else {}
        return OneLLMEngine(self.pretrained, dtype=resolve_dtype(dtype),
                            kv_cache_gib=None if kv_cache_gib is None else float(kv_cache_gib),
                            max_num_seqs=max_num_seqs, seed=self.seed, **kwargs)

    # ------------------------------------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self._log.warning(message)

    def _doc(self, task: str, split: str, doc_id: int):
        return self.task_dict[task][split][doc_id]

    def _visuals(self, doc_to_visual: Callable | None, doc) -> list[Any]:
        if doc_to_visual is None or doc is None:
            return []
        return flatten_visuals(doc_to_visual(doc))

    def _prompt_ids(self, context: Any) -> list[int]:
        question = context[0] if isinstance(context, list) else context
        return self.processor.prompt_ids(str(question or ""), template=self.template)

    def _too_long(self, prepared: _Prepared, n_inputs: int, extra_tokens: int = 0) -> str | None:
        length = len(prepared.prompt_ids) + extra_tokens + self.config.block_length * n_inputs
        if length > self.config.max_seq_len:
            return (f"prompt of {length} positions ({len(prepared.prompt_ids) + extra_tokens} text tokens + "
                    f"{n_inputs} input blocks) exceeds the model's max_seq_len {self.config.max_seq_len}")
        return None

    def _fail(self, what: str, problem: str) -> None:
        if not self.skip_bad_inputs:
            raise RuntimeError(f"onellm: {what}: {problem}")
        self.failures.append((what, problem))
        self._log.warning(f"onellm: {what}: {problem}; answered with an empty string (skip_bad_inputs=false raises)")

    def _load_inputs(self, visuals: list[Any], what: str) -> tuple[list[tuple[str, Any]] | None, str | None]:
        from ..data.errors import InputError

        try:
            return to_model_inputs(visuals, self.processor), None
        except UnsupportedVisual:
            raise
        except (InputError, OSError, ValueError) as exc:
            if not self.skip_bad_inputs:
                raise
            return None, str(exc)

    def _forward_dtype(self):
        return next(self.model.upm.parameters()).dtype

    # ------------------------------------------------------------------------------------------------------------
    # Generation
    def _generate(self, prepared: Sequence[_Prepared], gen) -> list[tuple[str, int, int]]:
        """(generated text, prompt tokens, new tokens) per prepared request, one engine call."""
        samples = [self.processor.pack(p.prompt_ids, None, p.inputs) for p in prepared]
        if self.vllm is not None:  # the same packed prompts and input tensors, as `onellm infer --engine vllm`
            from ..vllm.engine import request_seed, sample_request

            reqs = [sample_request(s) for s in samples]
            seeds = [request_seed(self.seed, p.extra.get("request_id", str(p.index))) for p in prepared]
            out = self.vllm.generate(reqs, gen, seed=seeds)
            return [(t, len(r["prompt_token_ids"]), len(i)) for t, r, i in zip(out.raw_texts, reqs, out.token_ids)]
        from ..data.collate import move_batch
        from ..generation import generate

        batch = move_batch(self.processor.collate(samples, padding_side="left", with_labels=False), self.device,
                           self._forward_dtype())
        out = generate(self.model, self.processor, batch, gen)
        return [(t, len(s), len(i)) for t, s, i in zip(out.raw_texts, samples, out.token_ids)]

    def generate_until(self, requests: list[Instance]) -> list:
        from lmms_eval.api.instance import GenerationResult, TokenCounts
        from tqdm import tqdm

        results: list[Any] = [None] * len(requests)
        groups: dict[tuple[str, str], list[_Prepared]] = {}
        parsed: dict[tuple[str, str], GenerationRequest] = {}
        for i, req in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = req.args[:6]
            gen_req = parse_generation_kwargs(gen_kwargs, self.default_max_new_tokens)
            for name in gen_req.ignored:
                self._warn_once(f"gen:{task}:{name}", f"onellm: task {task}: generation kwarg {name} is not "
                                                      "supported and ignored")
            key = (str(task), json.dumps(gen_kwargs or {}, sort_keys=True, default=str))
            parsed[key] = gen_req
            item = _Prepared(i, self._prompt_ids(context),
                             extra={"doc_to_visual": doc_to_visual, "doc_id": doc_id, "task": task, "split": split,
                                    "request_id": f"{task}-{split}-{doc_id}-{i}"})
            groups.setdefault(key, []).append(item)

        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="onellm responding")
        for key, items in groups.items():
            gen_req = parsed[key]
            gen = gen_req.config()
            items = sorted(items, key=lambda p: -len(p.prompt_ids))  # long prompts first: padding stays small
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                ready = []
                for p in chunk:
                    e = p.extra
                    what = f"{e['task']} doc {e['doc_id']}"
                    visuals = self._visuals(e["doc_to_visual"], self._doc(e["task"], e["split"], e["doc_id"]))
                    p.inputs, problem = self._load_inputs(visuals, what)
                    problem = problem or self._too_long(p, len(p.inputs or []))
                    if problem:
                        self._fail(what, problem)
                        results[p.index] = GenerationResult("", TokenCounts(len(p.prompt_ids), 0))
                    else:
                        ready.append(p)
                if ready:
                    for p, (text, n_in, n_out) in zip(ready, self._generate(ready, gen)):
                        results[p.index] = GenerationResult(answer_text(text, gen_req.until),
                                                            TokenCounts(input_tokens=n_in, output_tokens=n_out))
                for p in chunk:
                    p.inputs = None  # free the tensors
                bar.update(len(chunk))
        bar.close()
        return results

    def generate_until_multi_round(self, requests: list[Instance]) -> list:
        """lmms-eval's multi-round protocol (as its LLaVA models run it): round 0 answers the context; each later
        round calls the task's ``doc_to_text(doc, previous_output=[...], round_idx=r, previous_round_info=...)``,
        which returns ``(visuals, context, terminal, round_outputs, round_info)``; the result per request is the
        list of its round answers."""
        results = []
        for req in requests:
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = req.args[:7]
            gen_req = parse_generation_kwargs(gen_kwargs, self.default_max_new_tokens)
            gen = gen_req.config()
            doc = self._doc(task, split, doc_id)
            visuals = self._visuals(doc_to_visual, doc)
            rounds: list[str] = []
            info = None
            round_idx = 0
            while True:
                if round_idx > 0:
                    visuals, context, terminal, rounds, info = doc_to_text(
                        doc, previous_output=list(rounds), round_idx=round_idx, previous_round_info=info)
                    rounds = list(rounds)
                    visuals = flatten_visuals(visuals)
                    if terminal:
                        break
                what = f"{task} doc {doc_id} round {round_idx}"
                p = _Prepared(0, self._prompt_ids(context),
                              extra={"request_id": f"{task}-{split}-{doc_id}-r{round_idx}"})
                p.inputs, problem = self._load_inputs(visuals, what)
                problem = problem or self._too_long(p, len(p.inputs or []))
                if problem:
                    self._fail(what, problem)
                    rounds.append("")
                else:
                    rounds.append(answer_text(self._generate([p], gen)[0][0], gen_req.until))
                round_idx += 1
            results.append(list(rounds))  # a list: lmms-eval keeps a list of strings as the rounds' answers
        return results

    # ------------------------------------------------------------------------------------------------------------
    # Scoring
    def _continuation_ids(self, continuation: str) -> list[int]:
        text = (continuation or "").strip()
        return self.processor.text.encode(text) if text else []

    def loglikelihood(self, requests: list[Instance]) -> list:
        """(negative log-likelihood of the continuation's tokens, summed; whether greedy decoding gives them) per
        request, each wrapped in lmms-eval's ``GenerationResult`` (see the end). lmms-eval's multiple_choice takes
        the argmin, so the most likely choice wins.

        The continuation is encoded on its own, stripped, right after the prompt (the chat template's
        "Assistant:"), as the template encodes an answer. Requests of one document share its loaded inputs."""
        if self.model is None:
            raise NotImplementedError("onellm: loglikelihood (output_type loglikelihood / multiple_choice) runs on "
                                      "engine=hf only; vLLM's engine returns no prompt log-probabilities here")
        import torch
        from tqdm import tqdm

        from ..constants import IGNORE_INDEX
        from ..data.collate import move_batch

        results: list[tuple[float, bool] | None] = [None] * len(requests)
        prepared: list[_Prepared] = []
        for i, req in enumerate(requests):
            args = req.args
            if len(args) >= 6:
                context, target, doc_to_visual, doc_id, task, split = args[:6]
                doc = self._doc(task, split, doc_id)
                continuation = target if isinstance(target, str) else target(doc)
                if isinstance(continuation, (list, tuple)):
                    continuation = continuation[0]
                source, what = (task, split, doc_id), f"{task} doc {doc_id}"
            else:  # ("", choice): the unconditional requests of acc_mutual_info, no inputs
                context, continuation = args[0], args[1]
                doc_to_visual = doc = source = None
                what = f"{req.task_name} doc {req.doc_id} (unconditional)"
            prompt = self._prompt_ids(context)
            cont = self._continuation_ids(str(continuation))
            prepared.append(_Prepared(i, prompt, extra={"cont": cont, "doc_to_visual": doc_to_visual, "doc": doc,
                                                        "source": source, "what": what}))

        order = sorted(prepared, key=lambda p: (str(p.extra["source"]), -len(p.prompt_ids) - len(p.extra["cont"])))
        bar = tqdm(total=len(requests), disable=self.rank != 0, desc="onellm scoring")
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            loaded: dict[Any, tuple[list | None, str | None]] = {}
            ready = []
            for p in chunk:
                e = p.extra
                if not e["cont"]:
                    results[p.index] = (0.0, True)
                    continue
                key = e["source"]
                if key not in loaded:
                    loaded[key] = self._load_inputs(self._visuals(e["doc_to_visual"], e["doc"]), e["what"])
                p.inputs, problem = loaded[key]
                problem = problem or self._too_long(p, len(p.inputs or []), len(e["cont"]))
                if problem:
                    self._fail(e["what"], problem)
                    results[p.index] = (float("inf"), False)
                else:
                    ready.append(p)
            if ready:
                samples = [self.processor.pack(p.prompt_ids + p.extra["cont"],
                                               [IGNORE_INDEX] * len(p.prompt_ids) + p.extra["cont"], p.inputs)
                           for p in ready]
                batch = move_batch(self.processor.collate(samples, padding_side="right", with_labels=True),
                                   self.device, self._forward_dtype())
                labels = batch.pop("labels")
                with torch.no_grad():
                    logits = self.model(**batch).logits[:, :-1]  # position t predicts token t + 1
                targets = labels[:, 1:]
                for row, p in enumerate(ready):
                    mask = targets[row] != IGNORE_INDEX
                    tgt, picked = targets[row][mask], logits[row][mask].float()  # (n,), (n, V)
                    nll = -torch.log_softmax(picked, dim=-1).gather(-1, tgt[:, None])[:, 0].sum()
                    results[p.index] = (float(nll), bool((picked.argmax(-1) == tgt).all()))
            for p in chunk:
                p.inputs = None
            bar.update(len(chunk))
        bar.close()
        # lmms-eval 0.7.3's evaluator passes every response through ``unwrap_generation_output``, which turns a
        # plain (float, bool) tuple into its string (then multiple_choice fails to unpack it); a GenerationResult's
        # ``text`` is passed on as it is.
        from lmms_eval.api.instance import GenerationResult

        return [GenerationResult(r) for r in results]
