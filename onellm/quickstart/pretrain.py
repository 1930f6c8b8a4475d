"""Stand-ins for the pretrained parts, trained on the synthetic world because nothing may be downloaded.

* :func:`pretrain_language_model`: a tiny LLaMA (HF ``LlamaForCausalLM``) trained as a plain causal LM on the
  world's language: every caption of every attribute combination and QA conversations in the chat template, each
  after its attribute words, so that it answers from what precedes it, as a real LLaMA reads its context.
* :func:`pretrain_clip`: a tiny open_clip ``CLIP`` trained with open_clip's own ``ClipLoss`` on rendered
  image-caption pairs: the flat 2-D shapes of the image modality and, like the photos of objects a real CLIP has
  seen, RGB photos of the 3-D scenes (sphere, cube, cone on the ground). Each batch holds every (colour, shape)
  class once, so no caption repeats in a batch (duplicates would be false negatives for the contrastive loss).

Both are then frozen by the alignment recipes, as LLaMA-2 and CLIP are in the real pipeline.
"""
from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import OneLLMConfig
from ..data.synth import world
from ..data.template import SYSTEM, encode_caption, encode_conversation
from ..data.text import TextTokenizer
from ..modalities.synth_common import COLOURS, SOLID_SHAPES


def world_conversations(rng: random.Random, modalities=None,
                        per_combination: int = 3) -> list[tuple[list[dict[str, str]], dict[str, str]]]:
    """(chat, attributes), ``per_combination`` per attribute combination of each modality: first the caption request
    and every question in a random order, then random non-empty subsets of them in a random order, so that every
    question is also asked first, as the benchmark's single-turn requests ask it."""
    chats = []
    for modality in modalities or world.ATTRIBUTES:
        for attrs in world.combinations(modality):
            for k in range(per_combination):
                asked = [None, *attrs]  # None: the caption request
                rng.shuffle(asked)
                if k:
                    asked = asked[: rng.randint(1, len(asked))]
                turns = world.conversation(modality, attrs, asked, lambda: (
                    rng.choice(world.caption_requests(modality)), world.caption(modality, attrs, rng.randrange(3))))
                chats.append((turns, attrs))
    return chats


def keyword_prefix(attributes: dict[str, str], rng: random.Random) -> str:
    """The attribute values in random order: pretraining on "values, then the text about them" teaches the tiny
    LM to read its answer from the context before it, which large pretrained LMs already do. The aligned
    modality tokens then only need to carry that information, as in the real recipe."""
    values = list(attributes.values())
    rng.shuffle(values)
    return " ".join(values)


def language_corpus(tokenizer: TextTokenizer, seed: int, modalities=None) -> list[list[int]]:
    """Token sequences of the world's text (of ``modalities``, default all), each with its attribute words in front
    (see :func:`keyword_prefix`), where the modality tokens will stand: captions (``[bos] values caption [eos]``,
    every template) and chats (``[bos] values`` + the template, see :func:`world_conversations`).

    Measured with a probe (generate from ``[bos] values`` alone, and from the values before a caption request or a
    question in the chat template; does the answer name each value?): the corpus of before (half of it without
    a prefix, captions always first in chats, 250 steps) read nothing in chats (25-33 %, chance); this one, 1000
    steps, names the prefix's values in 92 % of the answers (mean over every attribute and modality and the three
    forms). Without that, the alignment stages had to teach the frozen LLM to read, and instruction tuning had to
    teach it again inside the chat template."""
    rng = random.Random(seed)
    modalities = list(modalities or world.ATTRIBUTES)
    seqs = []
    for modality in modalities:
        for attrs in world.combinations(modality):
            for k in range(len(world.caption_templates(modality))):
                text = f"{keyword_prefix(attrs, rng)} {world.caption(modality, attrs, k)}"
                seqs.append(encode_caption(tokenizer, text)[0])
    for chat, attrs in world_conversations(rng, modalities):
        ids, _ = encode_conversation(tokenizer, chat)
        seqs.append([ids[0]] + tokenizer.encode(keyword_prefix(attrs, rng)) + ids[1:])
    return seqs


def tokenizer_corpus() -> list[str]:
    """The world's sentences and the chat template. The template is in every chat, so it is weighted (x10) like the
    world's frequent words: BPE then keeps its words whole (the system prompt is 29 pieces, not 101)."""
    return world.corpus_lines() + [SYSTEM, "### Human: ### Assistant:"] * 10


def pretrain_language_model(config: OneLLMConfig, tokenizer: TextTokenizer, steps: int, batch_size: int = 16,
                            lr: float = 3e-3, seed: int = 0, log: Callable[[str], None] = print, modalities=None):
    """Train a fresh ``LlamaForCausalLM`` of ``config.llm`` dims on the world's text; returns (model, losses).

    A batch is drawn from the shorter or the longer half of the corpus (captions or chats), so it pads little."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config.llm.to_hf())
    seqs = language_corpus(tokenizer, seed, modalities)
    by_length = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    halves = [by_length[: len(seqs) // 2], by_length[len(seqs) // 2:]]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01, foreach=True)
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        pool = halves[int(rng.integers(2))]
        idx = rng.choice(len(pool), size=min(batch_size, len(pool)), replace=False)
        batch = [seqs[pool[i]] for i in idx]
        width = max(len(s) for s in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_id)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, s in enumerate(batch):
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        for group in opt.param_groups:  # cosine decay
            group["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  language model step {step + 1}/{steps}: loss {np.mean(losses[-20:]):.3f}")
    return model.eval(), losses


def _clip_model(config: OneLLMConfig, context_length: int):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    v = config.vision
    vision = CLIPVisionCfg(layers=v.layers, width=v.width, head_width=v.head_width, mlp_ratio=v.mlp_ratio,
                           patch_size=v.patch_size, image_size=v.image_size)
    text = CLIPTextCfg(context_length=context_length, vocab_size=49408, width=v.embed_dim, heads=4, layers=2)
    return CLIP(v.embed_dim, vision, text, quick_gelu=v.quick_gelu)


# (colour, shape) classes of the 3-D scene photos, captioned like normal-map scenes ("a red cone on the ground")
SCENE_CLASSES = [{"colour": c, "shape": s} for c in COLOURS for s in SOLID_SHAPES]


def scene_photo(rng: np.random.Generator, colour: str, shape: str) -> np.ndarray:
    """An RGB photo of a 3-D object on the ground, near to far (the depth / normal scene renderer) -> (64, 64, 3)."""
    from ..modalities.paired_map import FAR_M, NEAR_M
    from ..data.synth.render import COLOUR_RGB, render_scene

    return render_scene(rng, shape, rng.uniform(NEAR_M[0], FAR_M[1]), COLOUR_RGB[colour])[0]


def pretrain_clip(config: OneLLMConfig, steps: int, lr: float = 1e-3, seed: int = 0,
                  log: Callable[[str], None] = print, scene_photos: int = 0):
    """Train a tiny open_clip CLIP on rendered (image, caption) pairs; returns (model, losses).

    ``scene_photos`` > 0 adds the 12 3-D scene classes to every batch, drawn from a pool of that many photos per
    class rendered up front (a scene takes ~20 ms to ray-march; the random crop varies each use)."""
    from open_clip.loss import ClipLoss
    from open_clip.tokenizer import SimpleTokenizer
    from PIL import Image

    from ..data.loaders.image import apply_crop, random_crop_params, to_clip_tensor
    from ..data.synth.render import shape_image

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = _clip_model(config, context_length=16)
    tokenize = SimpleTokenizer(context_length=16)
    classes = world.combinations("image")
    pool = [[Image.fromarray(scene_photo(rng, **a)) for _ in range(scene_photos)] for a in SCENE_CLASSES] \
        if scene_photos else []
    loss_fn = ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.1, foreach=True)
    size = config.vision.image_size
    losses = []
    for step in range(steps):
        images, texts = [], []

        def add(img: Image.Image, modality: str, attrs: dict[str, str]) -> None:
            images.append(to_clip_tensor(apply_crop(img, random_crop_params(img), size)))
            texts.append(world.caption(modality, attrs, int(rng.integers(3))))

        for attrs in classes:  # every class once per batch
            add(Image.fromarray(shape_image(rng, attrs["colour"], attrs["shape"])), "image", attrs)
        for attrs, photos in zip(SCENE_CLASSES, pool):
            add(photos[int(rng.integers(len(photos)))], "normal", attrs)
        image_feats, text_feats, scale = model(torch.stack(images), tokenize(texts))
        loss = loss_fn(image_feats, text_feats, scale)
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 20) * 0.5 * (1 + np.cos(np.pi * step / steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (step + 1) % max(1, steps // 5) == 0:
            acc = (image_feats @ text_feats.T).argmax(-1).eq(torch.arange(len(texts))).float().mean().item()
            log(f"  CLIP step {step + 1}/{steps}: loss {np.mean(losses[-20:]):.3f}, batch retrieval acc {acc:.2f}")
    return model.eval(), losses


def save_clip_visual(model, path: str | Path) -> Path:
    """The visual tower in open_clip's checkpoint layout (``visual.*``), as `onellm init --clip` reads it."""
    from ..io import save_safetensors

    state = {f"visual.{k}": v.contiguous() for k, v in model.visual.state_dict().items()}
    return save_safetensors(state, path)  # the umask's mode, fsynced


def clip_zero_shot_accuracy(model, config: OneLLMConfig, n: int = 48, seed: int = 123,
                            scenes: bool = False) -> float:
    """Held-out check: ``n`` fresh renders classified against the 12 class captions (the 2-D shape images, or
    with ``scenes`` the 3-D scene photos)."""
    from open_clip.tokenizer import SimpleTokenizer
    from PIL import Image

    from ..data.loaders.image import eval_crop, to_clip_tensor
    from ..data.synth.render import shape_image

    rng = np.random.default_rng(seed)
    modality, classes, render = ("normal", SCENE_CLASSES, scene_photo) if scenes else \
        ("image", world.combinations("image"), shape_image)
    with torch.no_grad():
        text = F.normalize(model.encode_text(SimpleTokenizer(context_length=16)(
            [world.caption(modality, a) for a in classes])), dim=-1)
        labels = rng.integers(len(classes), size=n)
        imgs = torch.stack([to_clip_tensor(eval_crop(Image.fromarray(render(rng, classes[k]["colour"],
                                                                            classes[k]["shape"])),
                                                     config.vision.image_size)) for k in labels])
        pred = (F.normalize(model.encode_image(imgs), dim=-1) @ text.T).argmax(-1)
    return float((pred.numpy() == labels).mean())


def stand_in_clip(config: OneLLMConfig, steps: int, seed: int, scene_photos: int, path: str | Path,
                  threads: int | None = None) -> dict:
    """Pretrain the stand-in CLIP, save its visual tower to ``path`` and score it (zero-shot, held out). Runs in a
    child process beside the language model's pretraining (``threads``: its share of the cores), so it returns
    plain data: losses, accuracies, seconds and its log lines."""
    start = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    lines: list[str] = []
    clip, losses = pretrain_clip(config, steps, seed=seed, log=lines.append, scene_photos=scene_photos)
    save_clip_visual(clip, path)
    out = {"losses": losses, "zero_shot": clip_zero_shot_accuracy(clip, config), "log": lines}
    if scene_photos:
        out["zero_shot_scenes"] = clip_zero_shot_accuracy(clip, config, scenes=True)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out
