"""Convert the released OneLLM-7B checkpoint (``consolidated.00-of-01.pth``) into a model directory (spec §2).

The release is Meta's layout under ``llma.``: LLaMA keys become HF ``LlamaForCausalLM`` keys (``wq``/``wk`` rows
permuted from Meta's interleaved-pair RoPE to HF's rotate-half), ``clip.visual.*`` becomes ``encoder.*``, the
OneLLM-specific keys keep their names under ``tokenizers.``/``upm.`` with ``rgbd``/``rgbn`` renamed
``depth``/``normal``; the six CLIP text-tower leftovers are dropped. Unknown, missing, duplicated or mis-shaped keys
are an error listing them, raised before anything is written. Sources are memory-mapped and converted one tensor at
a time into safetensors shards: the 15 GB release needs about one shard of memory, not the whole state dict.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache, reduce
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .checkpoint import CONFIG_FILE, atomic_directory, write_config, write_weights
from .hf_export import export_remote_code
from .model_card import write_model_card
from .config import OneLLMConfig
from .modalities import DEFAULT_MODALITIES
from .modalities import get as modality_definition

OFFICIAL_PREFIX = "llma."
REPORT_FILE = "conversion_report.json"
DTYPES = {"keep": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class ConversionError(RuntimeError):
    """The source cannot be converted; the message names every offending file or key."""


_TEXT_TOWER = ("CLIP text-tower leftover: the released code deletes only clip.transformer, so these stay in its "
               "state dict although OneLLM never runs the text tower")
DROPPED: dict[str, str] = {name: _TEXT_TOWER for name in (
    "clip.token_embedding.weight", "clip.positional_embedding", "clip.text_projection",
    "clip.ln_final.weight", "clip.ln_final.bias", "clip.logit_scale")}

# Target-config switches the released checkpoint needs: dotted field -> (value, why).
RELEASED_SWITCHES: dict[str, tuple[Any, str]] = {
    "inputs.point.sampling": ("rgb", "the released point tokenizer was trained sampling and grouping on channels "
                                     "3:6 (RGB), not xyz (spec §1.4, §7.2)"),
    "legacy_prompt": (True, "the released evaluation scripts prompt with '###Human:' (spec §3.8, §7.10)"),
    "legacy_kv_offset": (False, "our KV cache is correct; set it to true to reproduce the released scripts' "
                                "decoding bit for bit (their cache offset is 30 instead of 32, spec §1.7, §7.1)"),
}
ROPE_WHY = ("LLM wq/wk rows permuted from Meta's interleaved RoPE pairs (2i, 2i+1) to HF's rotate-half order; "
            "expert wq/wk are copied as is (the experts use no RoPE)")


def official_config(preset: str = "onellm-7b") -> OneLLMConfig:
    """``preset`` with the released checkpoint's switches (``RELEASED_SWITCHES``) written in."""
    return OneLLMConfig.preset(preset, **{name: value for name, (value, _) in RELEASED_SWITCHES.items()})


# Key mapping. Templates: {N} layer index, {rest} any suffix, {m} modality (official name on the left, ours on
# the right), {param}/{module} the per-modality UPM entries. The third field marks the LLM q/k projections.
_PLACEHOLDERS = {"N": r"\d+", "rest": r".+", "param": "resample_tokens|start_tag|end_tag",
                 "module": "clip_proj1|clip_proj2|routers"}
_LLM_LAYER = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj",
              "attention.wv": "self_attn.v_proj", "attention.wo": "self_attn.o_proj",
              "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj", "feed_forward.w3": "mlp.up_proj",
              "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
_RULES: tuple[tuple[str, str, str | None], ...] = (
    ("tok_embeddings.weight", "llm.model.embed_tokens.weight", None),
    ("norm.weight", "llm.model.norm.weight", None),
    ("output.weight", "llm.lm_head.weight", None),
    *((f"layers.{{N}}.{meta}.weight", f"llm.model.layers.{{N}}.{hf}.weight",
       {"attention.wq": "q", "attention.wk": "k"}.get(meta)) for meta, hf in _LLM_LAYER.items()),
    ("clip.visual.{rest}", "encoder.{rest}", None),
    ("conv1.{m}.{rest}", "tokenizers.conv1.{m}.{rest}", None),
    ("positional_embedding.{m}", "tokenizers.positional_embedding.{m}", None),
    ("resample_layers.{rest}", "upm.resample_layers.{rest}", None),
    ("{param}.{m}", "upm.{param}.{m}", None),
    ("{module}.{m}.{rest}", "upm.{module}.{m}.{rest}", None),
)
def _official_names(modalities: Sequence[str] = DEFAULT_MODALITIES) -> dict[str, str]:
    """The released checkpoint's keys of these modalities -> our names (``rgbd`` -> ``depth``)."""
    return {modality_definition(m).official_name: m for m in modalities}


def _pattern(template: str, modalities: Mapping[str, str]) -> re.Pattern:
    parts = re.split(r"\{(\w+)\}", template)  # literal, placeholder, literal, ...
    regex = "".join(re.escape(p) if i % 2 == 0 else
                    f"(?P<{p}>{'|'.join(modalities) if p == 'm' else _PLACEHOLDERS[p]})"
                    for i, p in enumerate(parts))
    return re.compile(regex + r"\Z")


@lru_cache(maxsize=8)
def _rules(modalities: tuple[str, ...]):
    """(forward rules, backward rules, official -> ours, ours -> official) for a model with ``modalities``."""
    to_ours = _official_names(modalities)
    to_official = {ours: official for official, ours in to_ours.items()}
    forward = [(_pattern(src, to_ours), dst, rope) for src, dst, rope in _RULES]
    backward = [(_pattern(dst, to_official), src) for src, dst, _ in _RULES]
    return forward, backward, to_ours, to_official


def _fill(template: str, groups: dict[str, str], modalities: Mapping[str, str]) -> str:
    return template.format(**{**groups, **({"m": modalities[groups["m"]]} if "m" in groups else {})})


@dataclass(frozen=True)
class KeyMapping:
    target: str | None  # our state-dict name; None when the key is dropped
    rope: str | None = None  # "q" / "k": an LLM projection whose rows get the RoPE permutation
    dropped: str | None = None  # why the key is not converted


def map_key(key: str, modalities: Sequence[str] = DEFAULT_MODALITIES) -> KeyMapping | None:
    """Our name for an official key (the ``llma.`` prefix is optional); None when no rule covers it."""
    name = key.removeprefix(OFFICIAL_PREFIX)
    if name in DROPPED:
        return KeyMapping(None, dropped=DROPPED[name])
    forward, _, to_ours, _ = _rules(tuple(modalities))
    for pattern, template, rope in forward:
        if match := pattern.match(name):
            return KeyMapping(_fill(template, match.groupdict(), to_ours), rope)
    return None


def official_key(target: str, modalities: Sequence[str] = DEFAULT_MODALITIES) -> str | None:
    """The official key that converts to our ``target`` name (for error messages and tests)."""
    _, backward, _, to_official = _rules(tuple(modalities))
    for pattern, template in backward:
        if match := pattern.match(target):
            return OFFICIAL_PREFIX + _fill(template, match.groupdict(), to_official)
    return None


def permute_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Meta's interleaved RoPE row order (pairs 2i, 2i+1 in each head) -> HF's rotate-half (i, i + head_dim/2)."""
    dim1, dim2 = w.shape
    return w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)


def convert_tensor(t: torch.Tensor, rope_heads: int | None, dtype: torch.dtype | None) -> torch.Tensor:
    """One source tensor -> the tensor to write (permuted for RoPE if ``rope_heads``, cast to ``dtype``)."""
    if rope_heads:
        t = permute_rope(t, rope_heads)
    if dtype is not None and t.is_floating_point():
        t = t.to(dtype)
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()  # a view into a bigger storage (torch.save keeps views shared); safetensors refuses those
    return t


# Sources
@dataclass
class SourceTensor:
    origin: str  # the file it comes from
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]  # lazy: memory-mapped files read the bytes only when converted


def _torch_load(path: Path) -> tuple[Any, bool]:
    """``torch.load`` restricted to tensors; memory-mapped unless the file predates the zip format."""
    mmap = zipfile.is_zipfile(path)  # legacy (non-zip) files cannot be memory-mapped: read whole
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap), mmap
    except pickle.UnpicklingError as exc:
        if "weights only" not in str(exc).lower():  # a corrupt pickle, not a refused one
            raise ConversionError(f"{path}: not a readable PyTorch checkpoint: {exc}") from exc
        culprit = re.search(r"GLOBAL \S+", str(exc))
        raise ConversionError(
            f"{path}: refused to load: it contains executable code (pickled objects that would run code when "
            f"unpickled{': ' + culprit.group(0) if culprit else ''}); only plain tensor checkpoints are converted "
            "(torch.load(weights_only=True))") from exc
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as exc:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint: {exc}") from exc


def _lazy(obj: Any, path: Path) -> dict[str, tuple[tuple[int, ...], Callable[[], torch.Tensor]]]:
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)] if isinstance(obj, dict) else [path]
    if bad:
        raise ConversionError(f"{path}: expected a dict of tensors; not tensors: {_listing(bad)}")
    return {k: (tuple(v.shape), lambda v=v: v) for k, v in obj.items()}


def _official_tensors(path: Path) -> tuple[dict[str, SourceTensor], dict[str, Any]]:
    obj, mmap = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a training checkpoint {"model": ..., "optimizer": ..., ...}
    state = {k: SourceTensor(str(path), shape, load) for k, (shape, load) in _lazy(obj, path).items()}
    return state, {"path": str(path), "keys": len(state), "bytes": path.stat().st_size, "memory_mapped": mmap}


def expand_sources(paths: Sequence[str | Path]) -> list[Path]:
    """Files to read: the given files, plus every ``*.pth`` of a given directory (the 10-shard variant)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.pth"))  # .s0.pth ... .s9.pth; the order does not matter
            if not found:
                raise ConversionError(f"{p}: no *.pth files in this directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise ConversionError(f"{p}: no such file or directory")
    return list({f.resolve(): f for f in files}.values())  # a file named twice is read once


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") for n in z.namelist())


def clip_tensors(path: str | Path) -> tuple[dict[str, SourceTensor], str]:
    """The ``visual.*`` tensors of a CLIP checkpoint, renamed to the official ``llma.clip.visual.*``.

    Accepts open_clip safetensors, a torch state dict (optionally under "state_dict", keys optionally prefixed
    "module.") or OpenAI's TorchScript archive (``ViT-L-14.pt``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"--clip {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        handle = safe_open(str(path), framework="pt", device="cpu")  # lazy: tensors read one by one
        raw = {k: (tuple(handle.get_slice(k).get_shape()), lambda k=k: handle.get_tensor(k)) for k in handle.keys()}
        kind = "open_clip safetensors"
    elif _is_torchscript(path):
        # a TorchScript archive: weights_only cannot read it; open_clip loads OpenAI's ViT-L-14.pt the same way
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        raw, kind = _lazy(state, path), "OpenAI TorchScript archive"
    else:
        obj, _ = _torch_load(path)
        obj = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
        if isinstance(obj, dict):  # the text tower and bookkeeping entries are not needed
            obj = {k: v for k, v in obj.items() if str(k).removeprefix("module.").startswith("visual.")}
        raw, kind = _lazy(obj, path), "torch state dict"
    out = {OFFICIAL_PREFIX + "clip." + k.removeprefix("module."): SourceTensor(str(path), shape, load)
           for k, (shape, load) in raw.items() if k.removeprefix("module.").startswith("visual.")}
    if not out:
        raise ConversionError(f"--clip {path}: no visual.* weights in this {kind}")
    return out, kind


# Planning: map every key, check it against the target config, before anything is written
def _listing(names: Sequence[str], limit: int = 30, sep: str = ", ") -> str:
    return sep.join(names[:limit]) + (f"{sep}... ({len(names) - limit} more)" if len(names) > limit else "")


# (config field, our key, axis): dimensions read off the checkpoint and checked against the config
_DIMS = (("llm.vocab_size", "llm.model.embed_tokens.weight", 0), ("llm.hidden_size", "llm.model.norm.weight", 0),
         ("llm.intermediate_size", "llm.model.layers.0.mlp.gate_proj.weight", 0),
         ("vision.width", "encoder.class_embedding", 0), ("vision.patch_size", "encoder.conv1.weight", 3),
         ("upm.num_tokens", "upm.resample_tokens.image", 1),
         ("inputs.fmri.voxels", "tokenizers.conv1.fmri.weight", 1))
# (config field, regex): layer / expert counts = highest index + 1
_COUNTS = (("llm.num_layers", r"llm\.model\.layers\.(\d+)\."),
           ("vision.layers", r"encoder\.transformer\.resblocks\.(\d+)\."),
           ("upm.num_experts", r"upm\.resample_layers\.(\d+)\."),
           ("upm.expert_layers", r"upm\.resample_layers\.0\.(\d+)\."))


def _config_value(config: OneLLMConfig, dotted: str) -> Any:
    return reduce(getattr, dotted.split("."), config)


@dataclass
class Plan:
    entries: dict[str, tuple[str, KeyMapping]]  # our name -> (source key, mapping), in the model's order
    dropped: dict[str, str]  # source key -> why
    dims: dict[str, int]  # config field -> value read off the checkpoint


def plan_conversion(shapes: Mapping[str, tuple[int, ...]], config: OneLLMConfig) -> Plan:
    """Map every source key (official name -> shape) onto ``config``'s model; raise listing every problem."""
    from .model import OneLLM

    with torch.device("meta"):  # names and shapes only: no memory
        expected = {k: tuple(v.shape) for k, v in OneLLM(config).state_dict().items()}
    by_target: dict[str, tuple[str, KeyMapping]] = {}
    unknown, duplicated, dropped, all_targets = [], [], {}, []
    for key in shapes:
        mapping = map_key(key, config.modalities)
        if mapping is not None and mapping.target is not None:
            all_targets.append(mapping.target)  # unknown ones too: layer counts report what the file has
        if mapping is None or (mapping.target is not None and mapping.target not in expected):
            unknown.append(key)
        elif mapping.target is None:
            dropped[key] = mapping.dropped
        elif mapping.target in by_target:
            duplicated.append(f"{key} and {by_target[mapping.target][0]} -> {mapping.target}")
        else:
            by_target[mapping.target] = (key, mapping)
    missing = [official_key(t, config.modalities) or t for t in expected if t not in by_target]
    dims = {field: shapes[by_target[t][0]][axis] for field, t, axis in _DIMS if t in by_target}
    for field, regex in _COUNTS:
        dims[field] = max((int(m[1]) for t in all_targets if (m := re.match(regex, t))), default=-1) + 1
    differ = [f"{field}: the checkpoint has {value}, the target config has {_config_value(config, field)}"
              for field, value in dims.items() if value != _config_value(config, field)]
    shape = [f"{key} {list(shapes[key])}: {t} needs {list(expected[t])}"
             for t, (key, _) in by_target.items() if tuple(shapes[key]) != expected[t]]
    errors = [f"{what} ({len(names)}):\n    {_listing(names, 20, chr(10) + '    ')}" for what, names in (
        ("dimensions that differ from the target config (wrong preset?)", differ),
        ("keys not covered by the mapping", unknown), ("keys mapped twice", duplicated),
        ("missing keys", missing), ("shape mismatches", shape)) if names]
    if errors:
        raise ConversionError(f"cannot convert the checkpoint into the target config {config.name!r}:\n  "
                              + "\n  ".join(errors))
    return Plan({t: by_target[t] for t in expected}, dropped, dims)


def _check_out(out: Path, inputs: Sequence[Path]) -> None:
    """``out`` is replaced as a whole: refuse anything but a model directory or an empty one."""
    inside = [str(p) for p in inputs if p.resolve().is_relative_to(out.resolve())]
    if inside:
        raise ConversionError(f"--out {out}: contains the input(s) {_listing(inside)}; choose another directory")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CONFIG_FILE).exists())):
        raise ConversionError(f"--out {out}: exists and is neither a model directory nor empty; refusing to "
                              "replace it")


def convert_checkpoint(official: Sequence[str | Path], tokenizer: str | Path, out: str | Path, *,
                       clip: str | Path | None = None, dtype: str = "keep", max_shard_size: int | str = "5GB",
                       config: OneLLMConfig | None = None,
                       progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Convert the official checkpoint file(s) into the model directory ``out``; returns the report.

    ``config`` is the target (default: ``official_config("onellm-7b")``); ``dtype`` is a key of ``DTYPES``;
    ``progress(done, total)`` is called after each tensor.
    """
    from .data.text import load_tokenizer
    from .model import OneLLM
    from .processing import OneLLMProcessor

    config = config or official_config()
    if dtype not in DTYPES:
        raise ConversionError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    files = expand_sources(official)
    out = Path(out)
    _check_out(out, [*files, Path(tokenizer), *([Path(clip)] if clip else [])])
    sources: dict[str, SourceTensor] = {}
    infos, duplicated = [], []
    for f in files:
        tensors, info = _official_tensors(f)
        duplicated += [f"{k} ({sources[k].origin} and {f})" for k in tensors if k in sources]
        sources.update(tensors)
        infos.append(info)
    if duplicated:
        raise ConversionError(f"keys present in more than one file: {_listing(duplicated)}")
    clip_files = sorted({s.origin for k, s in sources.items()
                         if k.removeprefix(OFFICIAL_PREFIX).startswith("clip.visual.")})
    if clip_files:  # the tensors the model was trained with (spec §2.6.1)
        clip_info: dict[str, Any] = {"source": "official checkpoint", "files": clip_files,
                                     "ignored_clip_argument": str(clip) if clip else None}
    elif clip is None:
        raise ConversionError("the official checkpoint has no llma.clip.visual.* weights: pass --clip with the "
                              "CLIP ViT-L/14 it was trained with (open_clip safetensors or state dict, or OpenAI's "
                              "TorchScript ViT-L-14.pt)")
    else:
        extra, kind = clip_tensors(clip)
        sources.update(extra)
        clip_info = {"source": kind, "files": [str(clip)], "keys": len(extra)}
    plan = plan_conversion({k: s.shape for k, s in sources.items()}, config)
    try:
        text_tokenizer = load_tokenizer(tokenizer)
    except (OSError, ValueError) as exc:
        raise ConversionError(f"--tokenizer {tokenizer}: {exc}") from exc
    if len(text_tokenizer) > config.llm.vocab_size:
        raise ConversionError(f"--tokenizer {tokenizer}: {len(text_tokenizer)} tokens, more than the model's "
                              f"vocabulary of {config.llm.vocab_size}")

    parts: Counter[str] = Counter()  # keys written per model part
    dtypes: Counter[str] = Counter()
    heads = {"q": config.llm.num_heads, "k": config.llm.num_kv_heads}

    def converted():
        for i, (target, (key, mapping)) in enumerate(plan.entries.items()):
            t = convert_tensor(sources[key].load(), heads.get(mapping.rope or ""), DTYPES[dtype])
            parts[OneLLM.part_of(target)] += 1
            dtypes[str(t.dtype).removeprefix("torch.")] += 1
            yield target, t
            if progress:
                progress(i + 1, len(plan.entries))

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_directory(out) as tmp:
        write_config(tmp, config)
        weights = write_weights(tmp, converted(), max_shard_size, metadata={"converted_by": "onellm.convert"})
        OneLLMProcessor.for_config(config, text_tokenizer).save_pretrained(tmp)
        export_remote_code(tmp)
        write_model_card(tmp, config)
        report = {
            "format": "transformers (model_type onellm)", "sources": infos, "target_config": config.name, "dtype": dtype,
            "dtypes_written": dict(dtypes),
            "keys": {"source": len(sources), "converted": len(plan.entries), "dropped": len(plan.dropped)},
            "keys_per_part": dict(parts),
            "rope_permuted": {"count": sum(1 for _, m in plan.entries.values() if m.rope), "why": ROPE_WHY},
            "dropped": plan.dropped, "clip": clip_info, "dims_from_checkpoint": plan.dims,
            "config_switches": {name: {"value": _config_value(config, name), "released_checkpoint": value,
                                       "why": why} for name, (value, why) in RELEASED_SWITCHES.items()},
            "tokenizer": {"source": str(tokenizer), "size": len(text_tokenizer)},
            "weights": weights, "bytes_written": sum((tmp / w).stat().st_size for w in weights),
        }
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report
