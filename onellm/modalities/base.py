"""What a modality is: one :class:`ModalityDefinition` holds every fact that distinguishes it.

The rest of the library reads these definitions through the registry (``onellm.modalities``) and never names a
modality itself. A definition says

* who it is: ``name``, ``aliases`` (``rgbd`` ...), ``official_name`` (its key in the released checkpoint);
* how its input reaches the shared CLIP encoder (:class:`ClipPatches`: CLIP's own frozen patch embedding, frames
  averaged after CLIP; or :class:`OwnTokenizer`: a trainable module with its own learned positional embedding);
* its input geometry: ``input_config`` (a dataclass of its input-config fields, the per-modality section
  ``config.inputs.<name>``) and ``input_shape(config)``;
* how files become tensors (:class:`LoaderSpec`: the load function, file extensions, manifest options);
* the prompt used when a request has none, and the noun used in generated text;
* its synthetic-world generator (:class:`SynthSpec`).

Nothing here imports torch at module level: the registry is read by ``--help`` and manifest validation, which must
stay fast. Builders and loaders import what they need when they are called.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover - type names only
    import numpy as np
    import torch
    from torch import nn

    from ..config import OneLLMConfig


@dataclass(frozen=True)
class ClipPatches:
    """The input is an image or a stack of images, tokenised by CLIP's frozen ``conv1`` and positioned with CLIP's
    frozen positional embedding; a stack's CLIP outputs are averaged over its frames.

    Args:
        stacked: inputs are (T, 3, S, S) stacks of any T (video clips x crops, [RGB, map] pairs); otherwise one
            (3, S, S) image.
    """

    stacked: bool = False


@dataclass(frozen=True)
class OwnTokenizer:
    """A trainable tokenizer of the modality's own, ``tokenizers.conv1.<name>`` in the state dict, with a learned
    positional embedding ``tokenizers.positional_embedding.<name>`` of ``num_tokens + 1`` rows (CLS first).

    Args:
        build: ``build(config) -> nn.Module`` mapping a batch of inputs (N, *input_shape) to tokens (N, L, D);
            it casts its input to its own weight dtype.
        num_tokens: ``num_tokens(config) -> L``, the tokens it emits per input (no CLS).
    """

    build: Callable[["OneLLMConfig"], "nn.Module"]
    num_tokens: Callable[["OneLLMConfig"], int]


@dataclass(frozen=True)
class LoaderSpec:
    """How a file (or a manifest input dict) becomes the model's input tensor.

    Args:
        load: ``load(path, *, train, config, **options) -> tensor`` of ``input_shape(config)``; raises
            :class:`~onellm.data.errors.InputError` naming the file for bad input. ``train`` turns on the
            original's training augmentations, drawn from torch's global RNG.
        extensions: file extensions it reads (lower case, with the dot).
        options: option names a manifest input or a caller may pass (``rgb``, ``timestamps`` ...).
        required: options that must be given.
        path_options: options holding file paths (resolved against the manifest's folder like ``path``).
        number_options: options that must be numbers.
        decoded: the in-memory form this modality takes from engines that decode media themselves (vLLM's OpenAI
            server): ``"pil"`` (a PIL image), ``"waveform"`` (``(samples, rate)``) or ``"frames"``
            (``((T, H, W, 3) uint8, metadata)``); None where only files and tensors are taken.
        augments: ``train=True`` draws random augmentations; False where a training load equals an eval load
            (such tensors may be kept in memory between epochs: ``input_cache_mb`` of a recipe).
    """

    load: Callable[..., "torch.Tensor"]
    extensions: tuple[str, ...]
    options: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    path_options: tuple[str, ...] = ()
    number_options: tuple[str, ...] = ()
    option_help: Mapping[str, str] = field(default_factory=dict)  # one line per option (CLI flags, docs)
    decoded: str | None = None
    augments: bool = True


@dataclass(frozen=True)
class SynthSpec:
    """The modality's part of the synthetic world (``onellm synth``): two attributes with closed vocabularies,
    captions that name every value, one question per attribute, and a writer that renders a sample to files.

    Args:
        attributes: attribute -> values; the order of attributes is the order they appear in manifests.
        captions: caption templates, each naming every attribute (``{name}`` -> its phrase, ``{name_value}`` ->
            the bare value).
        questions: attribute -> question whose answer is the bare value.
        write: ``write(root, stem, index, attributes, rng, inputs) -> manifest input dict`` (paths relative to
            ``root``); ``inputs`` is the modality's input-config section (None when it has none).
        phrases: attribute -> value -> the words a caption uses for it ("near" -> "near the camera").
        stream: the key of its random stream: every draw comes from a generator seeded by (seed, split, stream,
            ...), so adding or removing another modality never changes this one's data. Defaults to crc32(name).
    """

    attributes: Mapping[str, tuple[str, ...]]
    captions: tuple[str, ...]
    questions: Mapping[str, str]
    write: Callable[..., dict]
    phrases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    stream: int | None = None


@dataclass(frozen=True)
class ModalityDefinition:
    """Everything specific to one modality (module docstring). Register it with ``onellm.modalities.register``."""

    name: str
    encoder_input: ClipPatches | OwnTokenizer
    input_shape: Callable[["OneLLMConfig"], tuple[int, ...]]
    loader: LoaderSpec
    caption_prompt: str  # the released evaluation scripts' prompt; the default of a request without a prompt
    noun: str  # "point cloud": how generated text names one input ("Describe this point cloud.")
    official_name: str | None = None  # key in the released checkpoint (default: name)
    aliases: tuple[str, ...] = ()
    input_config: type | None = None  # dataclass of this modality's input fields (config.inputs.<name>)
    legacy_input_fields: Mapping[str, str] = field(default_factory=dict)  # flat pre-registry name -> field
    synth: SynthSpec | None = None
    demo_kind: str = "file"  # how the web demo offers an upload of it (image, video, audio, point_cloud ...)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"modality name {self.name!r} must be a lower-case identifier")
        if self.official_name is None:
            object.__setattr__(self, "official_name", self.name)

    # Derived facts ------------------------------------------------------------------------------------
    @property
    def uses_clip_patches(self) -> bool:
        return isinstance(self.encoder_input, ClipPatches)

    @property
    def stacked(self) -> bool:
        """Inputs are stacks of frames of any length, averaged after CLIP."""
        return isinstance(self.encoder_input, ClipPatches) and self.encoder_input.stacked

    @property
    def marker(self) -> str:
        """The text marker a processor expands into this modality's block: ``<image>``, ``<audio>`` ..."""
        return f"<{self.name}>"

    @property
    def synth_stream(self) -> int:
        if self.synth is not None and self.synth.stream is not None:
            return self.synth.stream
        return zlib.crc32(self.name.encode())

    def num_clip_tokens(self, config: "OneLLMConfig") -> int:
        """Tokens entering CLIP for one input, CLS included (image 257, audio 1213, ...)."""
        if isinstance(self.encoder_input, OwnTokenizer):
            return self.encoder_input.num_tokens(config) + 1
        return config.vision.num_patches + 1

    def inputs_of(self, config: "OneLLMConfig") -> Any:
        """This modality's input-config section of ``config`` (None when it has no fields)."""
        return config.inputs.get(self.name)

    def load(self, path, *, train: bool, config: "OneLLMConfig", **options: Any) -> "torch.Tensor":
        return self.loader.load(path, train=train, config=config, **options)

    def synth_rng(self, seed: int, split: str, *extra: int) -> "np.random.Generator":
        """Independent generator per (seed, split, modality stream, ...); crc32 because ``hash(str)`` is salted."""
        import numpy as np

        return np.random.default_rng([seed, zlib.crc32(split.encode()), self.synth_stream, *extra])
