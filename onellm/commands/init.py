"""``onellm init``: assemble a fresh model directory (stage I's starting point) from local pretrained parts."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..errors import UsageError
from .common import PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="model dimensions")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--clip", help="open_clip checkpoint file of the vision tower (e.g. ViT-L-14 OpenAI weights; "
                                  "default: random weights)")
    p.add_argument("--llm", help="HF LLaMA directory (e.g. Llama-2-7b-hf; default: random weights)")
    p.add_argument("--tokenizer", help="tokenizer.model or a tokenizer directory (default: from --llm, else "
                                       "a small SentencePiece model trained now)")
    p.add_argument("--corpus", help="text file to train the small tokenizer on (one sentence per line; default: a "
                                    "built-in corpus)")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="size of a freshly trained tokenizer (default: the preset's vocabulary size)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="dtype of the saved weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the freshly initialised weights")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. inputs.point_sampling=rgb upm.num_tokens=16")


def parse_overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> int:
    from ..config import OneLLMConfig
    from ..data.text import load_tokenizer, train_sentencepiece
    from ..inference import resolve_dtype
    from ..init_model import build_initial_model, builtin_corpus

    try:
        config = OneLLMConfig.preset(args.preset, **parse_overrides(args.set))
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"--set: {exc}") from None
    tok_path = args.tokenizer or args.llm
    # a tokenizer trained here lives in a temporary folder until the model (with its tokenizer.model) is saved
    with tempfile.TemporaryDirectory(prefix="onellm-tok-") as tmp:
        if tok_path:
            tokenizer = load_tokenizer(tok_path)
        else:
            lines = Path(args.corpus).read_text(encoding="utf-8").splitlines() if args.corpus else builtin_corpus()
            vocab = args.vocab_size or config.llm.vocab_size
            tokenizer = load_tokenizer(train_sentencepiece(lines * 4, tmp, vocab_size=vocab))
        if len(tokenizer) != config.llm.vocab_size:
            if args.llm:
                raise UsageError(f"{tok_path}: the tokenizer has {len(tokenizer)} tokens but the LLM "
                                 f"{config.llm.vocab_size}; give the LLM's own tokenizer")
            config.llm.vocab_size = len(tokenizer)
        model = build_initial_model(config, clip=args.clip, llm=args.llm, seed=args.seed,
                                    dtype=resolve_dtype(args.dtype, __import__("torch").device("cpu")))
        from ..processing import OneLLMProcessor

        model.save_pretrained(args.out, processor=OneLLMProcessor.for_config(model.config, tokenizer))
    counts = model.parameter_summary()
    print(f"wrote {args.out}: preset {config.name}, vocabulary {len(tokenizer)}, "
          + ", ".join(f"{k} {v[1]:,}" for k, v in counts.items()))
    print(f"  encoder: {args.clip or 'random'}; LLM: {args.llm or 'random'}; tokenizer: {tok_path or 'trained now'}")
    return 0
