"""``onellm chat``: interactive terminal chat about one or more inputs, with streaming and multi-turn history.

Type a question and press Enter; ``/reset`` clears the history, ``/quit`` (or end of input) leaves.
"""
from __future__ import annotations

import argparse
import sys

from .infer import add_generation_arguments
from .inputs import add_input_arguments, inputs_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory")
    add_input_arguments(p)
    add_generation_arguments(p)


def _inputs(args: argparse.Namespace, config) -> list:
    from ..modalities.loading import load_modality

    return [(m, load_modality(m, path, train=False, config=config, **options))
            for m, path, options in inputs_from_args(args)]


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.collate import collate_packed, move_batch, pack_sample
    from ..data.errors import InputError
    from ..data.template import encode_prompt
    from ..generation import GenerationConfig, stream_generate
    from ..inference import load_for_inference

    torch.manual_seed(args.seed)
    model = load_for_inference(args.model, args.device, args.dtype)
    try:
        inputs = _inputs(args, model.config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device, dtype = next(model.parameters()).device, next(model.upm.parameters()).dtype
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    names = ", ".join(m for m, _ in inputs) or "no inputs"
    print(f"OneLLM chat ({names}). /reset clears the history, /quit leaves.", flush=True)
    history: list[tuple[str, str]] = []
    while True:
        try:
            question = input("> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            continue
        if question == "/quit":
            return 0
        if question == "/reset":
            history.clear()
            print("(history cleared)")
            continue
        ids = encode_prompt(model.tokenizer, question, history, legacy=model.config.legacy_prompt)
        sample = pack_sample(ids, None, inputs, model.block_length, pad_id=model.config.llm.pad_token_id)
        batch = move_batch(collate_packed([sample], padding_side="left", with_labels=False), device, dtype)
        answer = ""
        for piece in stream_generate(model, batch, gen):
            answer += piece
            print(piece, end="", flush=True)
        print(flush=True)
        history.append((question, answer.strip()))
