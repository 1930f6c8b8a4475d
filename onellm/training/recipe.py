"""Training recipes: one YAML file per stage, every key a field of :class:`Recipe`, ``key=value`` overrides.

Stages are data, not code: a recipe names the model directory to start from, the datasets (manifests or tar
shards, with repeat factors or weights), which parts train, the optimiser and schedule, batch geometry, precision
and the DeepSpeed config.
Nested keys are overridden with dots: ``optimizer.lr=1e-4 trainable.llm=full datasets.0.repeat=2``
(``datasets.<n>.manifest=...`` with n = the number of entries appends one).
Relative paths in a recipe (model, output_dir, manifests, shards, deepspeed) are relative to the working directory:
launch from the repository root.

Every value is validated (types, ranges, choices: pydantic dataclasses) when the recipe is read, before anything
heavy runs; a bad one raises :class:`onellm.errors.RecipeError` naming the file and the key.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError
from pydantic.dataclasses import dataclass

from ..errors import RecipeError

_STRICT = ConfigDict(extra="forbid")


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # pydantic's lax mode reads true as 1.0
        raise ValueError("must be a number, not a boolean")
    return value


def _modality_names(value: Any, allow_text: bool = False) -> list[str]:
    from ..modalities import resolve

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(m, str) for m in items):
        raise ValueError("must be a list of modality names")
    return [m.strip().lower() if allow_text and m.strip().lower() == "text" else resolve(m) for m in items]


def _selection(value: Any) -> bool | list[str]:
    if isinstance(value, bool):
        return value
    try:
        return _modality_names(value)
    except ValueError as exc:
        raise ValueError(f"must be true, false or a list of modality names ({exc})") from None


PosInt = Annotated[int, Field(strict=True, ge=1)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
Number = Annotated[float, BeforeValidator(_no_bool)]
PosFloat = Annotated[float, BeforeValidator(_no_bool), Field(gt=0)]
NonNegFloat = Annotated[float, BeforeValidator(_no_bool), Field(ge=0)]
Fraction = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, le=1)]
Beta = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, lt=1)]
Selection = Annotated[bool | list[str], PlainValidator(_selection)]
FilterModalities = Annotated[list[str] | None, PlainValidator(
    lambda v: None if v is None else _modality_names(v, allow_text=True))]


def _modality_key(value: Any) -> Any:
    """``image``, ``rgbd``, ``video+audio`` -> the canonical modality key (each part a registered modality)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a modality name or a '+'-joined key such as video+audio")
    from ..modalities import resolve

    return "+".join(resolve(m) for m in value.split("+"))


def _shard_spec(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return value
    raise ValueError("must be a shard pattern (laion/{00000..41407}.tar), a glob, a folder, a shards.json, or a "
                     "list of them")


def _shuffle_buffer(value: Any) -> Any:
    if value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ValueError("must be a number of samples >= 1, or 'all' (one shuffle over the whole entry)")


ShardNames = Annotated[str | list[str] | None, PlainValidator(_shard_spec)]
ModalityKey = Annotated[str | None, PlainValidator(_modality_key)]
ShuffleBuffer = Annotated[int | str, PlainValidator(_shuffle_buffer)]
# keys of a dataset entry that were added for shards: left out of a recipe's dict while they hold their defaults,
# so the fingerprint of a recipe written before they existed does not change
SHARD_KEY_DEFAULTS = {"shards": None, "modality": None, "caption_key": "auto", "shuffle_buffer": 10_000,
                      "weight": None}


@dataclass(config=_STRICT)
class DatasetSpec:
    """One data source: a JSONL manifest, or webdataset tar shards (img2dataset / video2dataset /
    ``data_prep/make_shards.py``; alignment recipes). Exactly one of ``manifest`` and ``shards``."""

    manifest: str | None = None  # JSONL manifest
    repeat: PosFloat = 1.0  # passes over this dataset per epoch (the original's per-dataset "epochs")
    modalities: FilterModalities = None  # keep only records whose inputs are all of these modalities ("text": none)
    shards: ShardNames = None  # "laion/{00000..41407}.tar", a glob, a folder, a shards.json, or a list of them
    modality: ModalityKey = None  # the modality (key) of every shard sample; default: the shards.json's
    caption_key: str = "auto"  # auto (json "caption", else .txt) | txt | <ext> | json.<field>
    shuffle_buffer: ShuffleBuffer = 10_000  # shards: samples shuffled together after shuffling the shard order;
    #                                         "all": one shuffle over the entry (like a manifest; 8 bytes/sample)
    weight: PosFloat | None = None  # instead of repeat: this entry's share of an epoch's samples

    def __post_init__(self) -> None:
        if (self.manifest is None) == (self.shards is None):
            raise ValueError("a dataset entry names exactly one of 'manifest' and 'shards'")
        if self.shards is None:
            named = [k for k, d in (("modality", None), ("caption_key", "auto"), ("shuffle_buffer", 10_000))
                     if getattr(self, k) != d]
            if named:
                raise ValueError(f"{', '.join(named)}: only for 'shards' entries (a manifest names each record's "
                                 "inputs itself)")
        elif self.modalities is not None:
            raise ValueError("'modalities' filters manifest records; a 'shards' entry has one 'modality'")
        if not (self.caption_key in ("auto", "txt") or self.caption_key.startswith("json.")
                or (self.caption_key and "/" not in self.caption_key)):
            raise ValueError(f"caption_key {self.caption_key!r}: use auto, txt, another member extension, or "
                             "json.<field>")
        if self.weight is not None and self.repeat != 1.0:
            raise ValueError("give 'repeat' or 'weight', not both")


@dataclass(config=_STRICT)
class TrainableSpec:
    encoder: bool = False  # the CLIP tower; frozen in every stage of the paper
    tokenizers: Selection = True  # own tokenizers (audio/point/imu/fmri) of all or the listed modalities
    upm: Selection = True  # per-modality UPM parts (tokens, proj1, router, proj2, tags)
    experts: bool | None = None  # shared expert blocks (default: when any UPM part trains)
    llm: Literal["frozen", "full", "lora"] = "frozen"


@dataclass(config=_STRICT)
class LoraSpec:
    rank: PosInt = 16
    alpha: PosFloat = 32.0
    dropout: Annotated[float, BeforeValidator(_no_bool), Field(ge=0, lt=1)] = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])
    load_in_4bit: bool = False  # base LLM weights in 4 bit (bitsandbytes + a GPU; detected, never required)


@dataclass(config=_STRICT)
class OptimizerSpec:
    lr: PosFloat = 5e-5
    min_lr: NonNegFloat = 5e-6
    weight_decay: NonNegFloat = 0.1  # not applied to biases and norm weights
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    eps: PosFloat = 1e-8


@dataclass(config=_STRICT)
class ScheduleSpec:
    warmup_steps: NonNegInt = 0  # linear warmup from 0 (optimizer steps)
    warmup_ratio: Fraction | None = None  # or a fraction of the run (the finetune's warmup_epochs 0.05 of 1 epoch)
    decay_steps: PosInt | None = None  # half-cosine from lr to min_lr ending here (default: the run's length)
    kind: Literal["cosine", "constant"] = "cosine"


def _dataset_entry(value: Any) -> Any:
    return {"manifest": value} if isinstance(value, str) else value  # a bare manifest path is an entry


@dataclass(config=_STRICT)
class Recipe:
    model: str  # model directory to start from (`onellm init` or a previous stage's output/model)
    output_dir: str
    datasets: Annotated[list[Annotated[DatasetSpec, BeforeValidator(_dataset_entry)]], Field(min_length=1)]
    task: Literal["alignment", "instruction"] = "alignment"
    trainable: TrainableSpec = field(default_factory=TrainableSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    init_from_image: Selection = False  # copy the image UPM parts to these (True: trained) modalities
    # Python modules imported before anything else: the place for modules that register extra modalities
    modules: list[str] = field(default_factory=list)
    # new modalities for the starting model (registered ones): their tokenizer and UPM parts are added and
    # initialised from the image parts, nothing else changes (see the README, "Adding a modality")
    add_modalities: Annotated[list[str], BeforeValidator(_modality_names)] = field(default_factory=list)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    grad_clip: NonNegFloat = 2.0  # max global grad norm; 0 disables
    micro_batch: PosInt = 4  # samples per rank per forward
    accumulation: PosInt = 1  # micro-batches per optimizer step
    max_steps: PosInt | None = None  # optimizer steps (takes precedence over epochs)
    epochs: PosFloat | None = None
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast dtype on GPU; CPU runs fp32
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # DeepSpeed JSON (auto values filled from this recipe) or None
    num_workers: NonNegInt = 2
    seed: NonNegInt = 0
    interleave: Literal["shuffle", "round_robin"] = "shuffle"
    max_seq_len: PosInt | None = None  # default: the model config's
    feature_cache: str | None = None  # frozen-encoder feature cache directory (`onellm cache-features`)
    # MB of loaded input tensors kept in memory per data-loading process, for modalities whose training load draws
    # no augmentation (video, IMU, fMRI): later epochs skip decoding them; 0 turns it off
    input_cache_mb: NonNegInt = 0
    # modalities whose training loads draw the original augmentations (random crops, SpecAugment masks, random point
    # subsets): true (all, as the original), false (none) or a list; the others load as in evaluation
    augment: Selection = True
    log_every: PosInt = 10
    save_every: PosInt = 500  # optimizer steps between checkpoints (and one at the end)
    keep_last: PosInt = 2  # complete checkpoints kept; >= 2 lets resume fall back when the newest is damaged
    resume: str = "auto"  # auto | never | a checkpoint directory
    report_to: list[Literal["tensorboard", "wandb"]] = field(default_factory=lambda: ["tensorboard"])
    source: str | None = None  # the YAML file this recipe came from (set by load_recipe)

    def __post_init__(self) -> None:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs")
        if self.task != "alignment" and any(d.shards is not None for d in self.datasets):
            raise ValueError("'shards' entries serve alignment (caption) data; instruction data is read from "
                             "manifests (length grouping needs every conversation's length up front)")


# -- reading -------------------------------------------------------------------------------------------------
def _fields(cls) -> dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(cls)}


_NESTED = {"trainable": TrainableSpec, "lora": LoraSpec, "optimizer": OptimizerSpec, "schedule": ScheduleSpec}


def _check_keys(data: dict[str, Any]) -> None:
    """Unknown keys, with the closest valid one (pydantic would only say "unexpected keyword argument")."""
    def check(obj: Any, cls, where: str) -> None:
        if not isinstance(obj, dict):
            return
        valid = sorted(set(_fields(cls)) - {"source"})
        unknown = sorted(set(map(str, obj)) - set(valid))
        if unknown:
            close = [m for k in unknown for m in difflib.get_close_matches(k, valid, 1)]
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            what = "unknown recipe keys" if not where else f"unknown keys in {where!r}"
            raise RecipeError(f"{what}: {unknown}{hint}; valid: {', '.join(valid)}")

    check(data, Recipe, "")
    for key, cls in _NESTED.items():
        check(data.get(key), cls, key)
    for k, entry in enumerate(data.get("datasets") or [] if isinstance(data.get("datasets"), list) else []):
        check(entry, DatasetSpec, f"datasets.{k}")


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "recipe"
    msg = error["msg"].removeprefix("Value error, ")
    msg = msg[0].lower() + msg[1:] if msg else msg
    if error["type"] == "missing":
        return f"{key}: required key missing"
    if error["type"] == "missing_positional_argument" or error["type"].startswith("too_"):
        return f"{key}: {msg}"
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{key}: {msg} (got {shown})" if error["loc"] else msg


def _import_modules(names: Any) -> None:
    import importlib

    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RecipeError("modules: must be a list of Python module names")
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise RecipeError(f"modules: cannot import {name!r} ({exc}); is it installed or on PYTHONPATH?") from None


def _build(data: dict[str, Any]) -> Recipe:
    _check_keys(data)
    _import_modules(data.get("modules"))  # before validation: they may register modalities the recipe names
    try:
        return Recipe(**data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        raise RecipeError("; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else
                                                     "")) from None


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c = value`` inside nested dicts/lists (list indices are integers; the index one past the end
    appends a new entry)."""
    parts = dotted.split(".")
    if not all(parts):
        raise RecipeError(f"override {dotted!r}: empty key")
    obj: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(obj, list):
            if not part.isdigit():
                raise RecipeError(f"override {dotted!r}: {'.'.join(parts[:i])} is a list; use an index, not {part!r}")
            k = int(part)
            if k > len(obj):
                n = len(obj)
                raise RecipeError(f"override {dotted!r}: {'.'.join(parts[:i])} has {n} entr{'y' if n == 1 else 'ies'} "
                                  f"(indices 0..{n - 1}; index {n} appends one)")
            if k == len(obj):
                obj.append(None if last else {})
            if last:
                obj[k] = value
            elif obj[k] is None:
                obj[k] = {}
            obj = obj[k]
        elif isinstance(obj, dict):
            if last:
                obj[part] = value
            else:
                if obj.get(part) is None:
                    obj[part] = [] if parts[i + 1].isdigit() else {}
                obj = obj[part]
        else:
            raise RecipeError(f"override {dotted!r}: {'.'.join(parts[:i])} is a {type(obj).__name__}, "
                              f"it has no key {part!r} ({where})")


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML, apply ``key=value`` overrides (values parsed as YAML), validate every value."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text ({exc})") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping")
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise RecipeError(f"override {item!r}: invalid YAML value: {_yaml_problem(exc)}") from None
        try:
            apply_override(data, key.strip(), value)
        except RecipeError as exc:
            raise RecipeError(f"{path}: {exc}") from None
    try:
        recipe = _build(data)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc}") from None
    recipe.source = str(path)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    out = dataclasses.asdict(recipe)
    out["optimizer"]["betas"] = list(out["optimizer"]["betas"])
    for entry in out["datasets"]:  # shard-only keys at their defaults are left out (see SHARD_KEY_DEFAULTS)
        for key, default in SHARD_KEY_DEFAULTS.items():
            if entry.get(key, default) == default:
                entry.pop(key, None)
        if entry.get("manifest") is None and "shards" in entry:
            entry.pop("manifest", None)
    return out
