"""Build a model from a preset and run one in-memory input of each of the 8 modalities through it."""
from __future__ import annotations

import argparse
import time

from .common import PRESETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", choices=PRESETS, help="model dimensions (random weights)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the random inputs")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one, else the CPU), cpu, cuda ...")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..config import OneLLMConfig
    from ..constants import IGNORE_INDEX
    from ..inference import resolve_device
    from ..model import OneLLM, input_shape, num_tokens
    from ..processing import collate, pack_sample

    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    config = OneLLMConfig.preset(args.preset)
    model = OneLLM(config).to(device)
    summary = model.parameter_summary()
    print(f"OneLLM preset {config.name!r} on {device}: " + ", ".join(f"{k} {v[1]:,}" for k, v in summary.items()))
    print(f"{'modality':8s} {'input':>22s} {'CLIP tokens':>12s} {'LLM block':>14s}")
    samples = []
    bos, vocab = config.llm.bos_token_id, config.llm.vocab_size
    for modality in config.modalities:
        x = torch.rand(input_shape(config, modality))  # uniform [0, 1): valid for every loader's value range
        with torch.no_grad():
            block = model.encode_modality(modality, x[None].to(device))
        print(f"{modality:8s} {str(tuple(x.shape)):>22s} {num_tokens(config, modality):>12d} "
              f"{str(tuple(block.shape[1:])):>14s}")
        text = [bos] + torch.randint(3, vocab, (8,)).tolist()
        samples.append(pack_sample(config, text, [IGNORE_INDEX] + text[1:], [(modality, x)]))
    batch = collate(config, samples).to(device)
    start = time.perf_counter()
    out = model(**batch)
    out.loss.backward()
    print(f"mixed batch of all {len(config.modalities)} modalities {tuple(batch['input_ids'].shape)}: loss "
          f"{out.loss.item():.4f} (random weights; ln(vocab) = {torch.log(torch.tensor(float(vocab))).item():.4f}), "
          f"forward+backward {time.perf_counter() - start:.2f} s")
    return 0
