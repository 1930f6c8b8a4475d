"""Training recipes: one YAML file per stage, every key a field of :class:`Recipe`, ``key=value`` overrides.

Stages are data, not code: a recipe names the model directory to start from, the manifests (with repeat
factors), which parts train, the optimiser and schedule, batch geometry, precision and the DeepSpeed config.
Nested keys are overridden with dots: ``optimizer.lr=1e-4 trainable.llm=full datasets.0.repeat=2``.
Relative paths in a recipe (model, output_dir, manifests, deepspeed) are relative to the working directory:
launch from the repository root.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..modality import Modality


@dataclass
class DatasetSpec:
    manifest: str  # JSONL manifest
    repeat: float = 1.0  # passes over this dataset per epoch (the original's per-dataset "epochs")
    modalities: list[str] | None = None  # keep only records whose inputs are all of these modalities


@dataclass
class TrainableSpec:
    encoder: bool = False  # the CLIP tower; frozen in every stage of the paper
    tokenizers: bool | list[str] = True  # own tokenizers (audio/point/imu/fmri) of all or the listed modalities
    upm: bool | list[str] = True  # per-modality UPM parts (tokens, proj1, router, proj2, tags)
    experts: bool | None = None  # shared expert blocks (default: when any UPM part trains)
    llm: Literal["frozen", "full", "lora"] = "frozen"


@dataclass
class LoraSpec:
    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])
    load_in_4bit: bool = False  # base LLM weights in 4 bit (bitsandbytes + a GPU; detected, never required)


@dataclass
class OptimizerSpec:
    lr: float = 5e-5
    min_lr: float = 5e-6
    weight_decay: float = 0.1  # not applied to biases and norm weights
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8


@dataclass
class ScheduleSpec:
    warmup_steps: int = 0  # linear warmup from 0 (optimizer steps)
    warmup_ratio: float | None = None  # or a fraction of the run (the finetune's warmup_epochs 0.05 of 1 epoch)
    decay_steps: int | None = None  # half-cosine from lr to min_lr ending here (default: the run's length)
    kind: Literal["cosine", "constant"] = "cosine"


@dataclass
class Recipe:
    model: str  # model directory to start from (`onellm init` or a previous stage's output/model)
    output_dir: str
    datasets: list[DatasetSpec]
    task: Literal["alignment", "instruction"] = "alignment"
    trainable: TrainableSpec = field(default_factory=TrainableSpec)
    lora: LoraSpec = field(default_factory=LoraSpec)
    init_from_image: bool | list[str] = False  # copy the image UPM parts to these (True: trained) modalities
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    grad_clip: float = 2.0  # max global grad norm; 0 disables
    micro_batch: int = 4  # samples per rank per forward
    accumulation: int = 1  # micro-batches per optimizer step
    max_steps: int | None = None  # optimizer steps (takes precedence over epochs)
    epochs: float | None = None
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"  # autocast dtype on GPU; CPU runs fp32
    gradient_checkpointing: bool = False
    deepspeed: str | None = None  # DeepSpeed JSON (auto values filled from this recipe) or None
    num_workers: int = 2
    seed: int = 0
    interleave: Literal["shuffle", "round_robin"] = "shuffle"
    max_seq_len: int | None = None  # default: the model config's
    feature_cache: str | None = None  # frozen-encoder feature cache directory (`onellm cache-features`)
    log_every: int = 10
    save_every: int = 500  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 2
    resume: str = "auto"  # auto | never | a checkpoint directory
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])  # tensorboard, wandb
    source: str | None = None  # the YAML file this recipe came from (set by load_recipe)

    def __post_init__(self) -> None:
        if self.task not in ("alignment", "instruction"):
            raise ValueError(f"task must be 'alignment' or 'instruction', got {self.task!r}")
        if not self.datasets:
            raise ValueError("a recipe needs at least one dataset")
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs")
        for name in ("micro_batch", "accumulation"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for spec in (self.trainable.tokenizers, self.trainable.upm):
            if isinstance(spec, list):
                for m in spec:
                    Modality.parse(m)
        if self.trainable.llm not in ("frozen", "full", "lora"):
            raise ValueError(f"trainable.llm must be frozen, full or lora, got {self.trainable.llm!r}")


def _coerce(cls, data: dict[str, Any]) -> dict[str, Any]:
    """YAML 1.1 reads ``1e-4`` as a string: turn strings into floats for float-typed fields."""
    types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
    out = dict(data)
    for key, value in data.items():
        if isinstance(value, str) and "float" in types.get(key, ""):
            try:
                out[key] = float(value)
            except ValueError:
                raise ValueError(f"{key!r} must be a number, got {value!r}") from None
    return out


_NESTED = {"trainable": TrainableSpec, "lora": LoraSpec, "optimizer": OptimizerSpec, "schedule": ScheduleSpec}


def _build(data: dict[str, Any]) -> Recipe:
    known = {f.name for f in dataclasses.fields(Recipe)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown recipe keys: {sorted(unknown)}")
    kwargs = dict(data)
    for key, cls in _NESTED.items():
        if key in kwargs and kwargs[key] is not None:
            sub = kwargs[key]
            bad = set(sub) - {f.name for f in dataclasses.fields(cls)}
            if bad:
                raise ValueError(f"unknown keys in {key!r}: {sorted(bad)}")
            if key == "optimizer" and "betas" in sub:
                sub = {**sub, "betas": tuple(float(b) for b in sub["betas"])}
            kwargs[key] = cls(**_coerce(cls, sub))
    kwargs["datasets"] = [DatasetSpec(**_coerce(DatasetSpec, d)) if isinstance(d, dict)
                          else DatasetSpec(manifest=str(d)) for d in kwargs.get("datasets") or []]
    kwargs = _coerce(Recipe, kwargs)
    for key in ("model", "output_dir"):
        if key not in kwargs:
            raise ValueError(f"recipe needs {key!r}")
    return Recipe(**kwargs)


def apply_override(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c = value`` inside nested dicts/lists (list indices are integers)."""
    parts = dotted.split(".")
    obj: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(obj, list):
            obj = obj[int(part)]
        else:
            if part not in obj or obj[part] is None:
                obj[part] = [] if nxt.isdigit() else {}
            obj = obj[part]
    last = parts[-1]
    if isinstance(obj, list):
        obj[int(last)] = value
    else:
        obj[last] = value


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML, apply ``key=value`` overrides (values parsed as YAML), resolve relative paths."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: recipe not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping")
    data = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, raw = item.split("=", 1)
        apply_override(data, key.strip(), yaml.safe_load(raw))
    try:
        recipe = _build(data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    recipe.source = str(path)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    out = dataclasses.asdict(recipe)
    out["optimizer"]["betas"] = list(out["optimizer"]["betas"])
    return out
