"""The official-checkpoint converter, on synthetic checkpoints with the released key names at tiny sizes.

tests/data/official_keys.txt is a copy of the spec's official_state_dict.txt (names + shapes of the 7B release);
each shape is mapped to the tiny config's dimensions, filled with random values and saved with torch.save.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from onellm import OneLLM, OneLLMConfig
from onellm.processing import OneLLMProcessor
from onellm.checkpoint import weight_files
from onellm.convert import (REPORT_FILE, ConversionError, convert_checkpoint, map_key, official_config,
                            official_key, plan_conversion)

from helpers import random_input
from meta_llama_reference import meta_llama_logits

INVENTORY = Path(__file__).parent / "data" / "official_keys.txt"
TEXT_TOWER = {"llma.clip.token_embedding.weight", "llma.clip.positional_embedding", "llma.clip.text_projection",
              "llma.clip.ln_final.weight", "llma.clip.ln_final.bias", "llma.clip.logit_scale"}
LLM_NAMES = {"attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
             "attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj",
             "feed_forward.w2": "mlp.down_proj", "feed_forward.w3": "mlp.up_proj",
             "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}


def official_inventory() -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in INVENTORY.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, shape, _dtype = line.split("\t")
            rows[name] = tuple(json.loads(shape))
    return rows


def target_config() -> OneLLMConfig:
    """The tiny preset with the released checkpoint's switches, built here independently of the converter."""
    config = OneLLMConfig.preset("tiny")
    config.inputs.point.sampling = "rgb"
    config.legacy_prompt = True
    config.legacy_kv_offset = False
    config.upm.num_tokens = 30  # as released: a 32-position block [start tag, 30 tokens, end tag]
    config.inputs.fmri.voxels = 300  # keeps the synthetic checkpoint small
    return config


def tiny_shape(name: str, shape: tuple[int, ...], config: OneLLMConfig) -> tuple[int, ...]:
    """An official 7B shape at ``config``'s dimensions."""
    D, inp = config.vision.width, config.inputs
    f, t = inp.audio.grid
    dims = {32000: config.llm.vocab_size, 11008: config.llm.intermediate_size, 2816: config.upm.ffn_hidden(D),
            3072: 3 * D, 1024: D, 768: config.vision.embed_dim, 257: config.vision.num_patches + 1,
            1213: f * t + 1, 1025: inp.point.num_groups + 1, 392: inp.imu.tokens + 1, 9: inp.fmri.tokens + 1,
            15724: inp.fmri.voxels, 8192: inp.fmri.tokens * D, 30: config.upm.num_tokens,
            14: config.vision.patch_size, 16: inp.audio.kernel, 10: inp.imu.kernel, 49408: 100,
            77: 77, 6: 6, 3: 3, 1: 1}
    # 4096 is both the LLM width and 4 x the CLIP width (CLIP MLP, router hidden layer)
    dims[4096] = 4 * D if name.startswith(("llma.clip.visual.", "llma.routers.")) else config.llm.hidden_size
    return tuple(dims[d] for d in shape)


def kept(name: str, config: OneLLMConfig) -> bool:
    """Whether an official key exists at ``config``'s layer counts."""
    upm = config.upm
    for regex, limits in ((r"llma\.layers\.(\d+)\.", (config.llm.num_layers,)),
                          (r".*resblocks\.(\d+)\.", (config.vision.layers,)),
                          (r"llma\.resample_layers\.(\d+)\.(\d+)\.", (upm.num_experts, upm.expert_layers))):
        if m := re.match(regex, name):
            return all(int(i) < n for i, n in zip(m.groups(), limits))
    return True


def synthetic_state(config: OneLLMConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in official_inventory().items():
        if kept(name, config):
            t = torch.randn(tiny_shape(name, shape, config), generator=g) * 0.2
            state[name] = t + 1 if name.endswith("norm.weight") else t
    return state


def expected_name(official: str) -> str:
    """Our name of a non-LLM official key, written out independently of the converter's rules."""
    k = re.sub(r"\.rgbn(\.|$)", r".normal\1", re.sub(r"\.rgbd(\.|$)", r".depth\1", official.removeprefix("llma.")))
    for old, new in (("clip.visual.", "encoder."), ("conv1.", "tokenizers.conv1."),
                     ("positional_embedding.", "tokenizers.positional_embedding.")):
        if k.startswith(old):
            return new + k[len(old):]
    return "upm." + k


def hf_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """transformers' convert_llama_weights_to_hf.permute (spec §2.4)."""
    d1, d2 = w.shape
    return w.view(n_heads, d1 // n_heads // 2, 2, d2).transpose(1, 2).reshape(d1, d2)


def read_weights(directory: Path) -> dict[str, torch.Tensor]:
    out = {}
    for f in weight_files(directory):
        out.update(load_file(str(f)))
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    config = target_config()
    state = synthetic_state(config)
    path = tmp_path_factory.mktemp("official") / "consolidated.00-of-01.pth"
    torch.save(state, path)
    return config, state, path


@pytest.fixture(scope="module")
def tokenizer_file(tokenizer_dir):
    return tokenizer_dir / "tokenizer.model"


@pytest.fixture(scope="module")
def converted(synthetic, tokenizer_file, tmp_path_factory):
    config, _, path = synthetic
    out = tmp_path_factory.mktemp("converted") / "onellm-tiny"
    report = convert_checkpoint([path], tokenizer_file, out, config=config, max_shard_size="1MB")
    return out, report


# ----------------------------------------------------------------------------------------------------------------
def test_mapping_covers_the_released_inventory():
    shapes = official_inventory()
    assert len(shapes) == 940
    plan = plan_conversion(shapes, official_config("onellm-7b"))  # shapes only: checked on the meta device
    assert set(plan.dropped) == TEXT_TOWER
    assert len(plan.entries) == 934
    permuted = {t for t, (_, m) in plan.entries.items() if m.rope}
    assert len(permuted) == 64 and all(re.search(r"self_attn\.[qk]_proj", t) for t in permuted)
    assert plan.dims == {"llm.vocab_size": 32000, "llm.hidden_size": 4096, "llm.intermediate_size": 11008,
                         "vision.width": 1024, "vision.patch_size": 14, "upm.num_tokens": 30,
                         "inputs.fmri.voxels": 15724, "llm.num_layers": 32, "vision.layers": 24,
                         "upm.num_experts": 3, "upm.expert_layers": 8}


def test_key_names_round_trip():
    with torch.device("meta"):
        names = OneLLM(target_config()).state_dict()
    for name in names:
        assert map_key(official_key(name)).target == name
    assert map_key("llma.clip_proj1.rgbd.0.weight").target == "upm.clip_proj1.depth.0.weight"
    assert map_key("llma.start_tag.rgbn").target == "upm.start_tag.normal"
    assert map_key("llma.resample_layers.2.7.attention.wq.weight").rope is None  # experts: no RoPE
    assert map_key("llma.layers.3.attention.wk.weight").rope == "k"
    assert map_key("llma.clip_proj1.depth.0.weight") is None  # our name is not an official one


def test_official_config_switches():
    config = official_config("tiny")
    assert config.inputs.point.sampling == "rgb" and config.legacy_prompt and not config.legacy_kv_offset
    assert official_config("onellm-7b").to_dict()["llm"] == OneLLMConfig.preset("onellm-7b").to_dict()["llm"]


def test_every_tensor_converted_by_the_mapping(synthetic, converted):
    config, state, _ = synthetic
    out = read_weights(converted[0])
    assert len(out) == len(state) - len(TEXT_TOWER)
    heads = config.llm.num_heads
    for name, src in state.items():
        if name in TEXT_TOWER:
            continue
        if m := re.fullmatch(r"llma\.layers\.(\d+)\.(.+)\.weight", name):
            target = f"llm.model.layers.{m[1]}.{LLM_NAMES[m[2]]}.weight"
            expected = hf_permute(src, heads) if m[2] in ("attention.wq", "attention.wk") else src
        elif name.startswith(("llma.tok_embeddings", "llma.norm", "llma.output")):
            target = {"llma.tok_embeddings.weight": "llm.model.embed_tokens.weight",
                      "llma.norm.weight": "llm.model.norm.weight", "llma.output.weight": "llm.lm_head.weight"}[name]
            expected = src
        else:
            target, expected = expected_name(name), src
        assert torch.equal(out[target], expected), name
    assert not any("rgbd" in k or "rgbn" in k for k in out)
    assert torch.equal(out["upm.resample_tokens.depth"], state["llma.resample_tokens.rgbd"])
    assert torch.equal(out["upm.routers.normal.fc1.weight"], state["llma.routers.rgbn.fc1.weight"])


def test_report(synthetic, converted):
    config, state, path = synthetic
    out, report = converted
    assert json.loads((out / REPORT_FILE).read_text()) == report
    assert set(report["dropped"]) == TEXT_TOWER
    assert report["sources"] == [{"path": str(path), "keys": len(state), "bytes": path.stat().st_size,
                                  "memory_mapped": True}]
    assert report["clip"]["source"] == "official checkpoint"
    assert report["rope_permuted"]["count"] == 2 * config.llm.num_layers
    assert sum(report["keys_per_part"].values()) == report["keys"]["converted"] == len(state) - 6
    assert set(report["keys_per_part"]) == {"encoder", "tokenizers", "upm", "experts", "llm"}
    assert report["config_switches"]["legacy_kv_offset"]["value"] is False
    assert "bit for bit" in report["config_switches"]["legacy_kv_offset"]["why"]
    assert report["config_switches"]["inputs.point.sampling"]["value"] == "rgb"
    assert report["dtype"] == "keep" and report["dtypes_written"] == {"float32": len(state) - 6}
    assert len(report["weights"]) > 1  # max_shard_size 1MB: sharded with an index


def test_loads_and_matches_the_meta_reference(synthetic, converted):
    config, state, _ = synthetic
    model = OneLLM.from_pretrained(converted[0])
    assert model.config.own_dict() == config.own_dict()
    assert json.loads((converted[0] / "config.json").read_text())["model_type"] == "onellm"  # the HF layout
    processor = OneLLMProcessor.from_pretrained(converted[0])
    assert processor.config == config and processor.decode(processor.text.encode("a red cube")) == "a red cube"
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        block = model.encode_modality("image", random_input(config, "image", g)[None])
        assert block.shape == (1, 32, config.llm.hidden_size)
        ids = torch.randint(3, config.llm.vocab_size, (1, 12), generator=g)
        embeds = torch.cat([model.embed_text(torch.tensor([[1]])), block, model.embed_text(ids)], dim=1)
        logits = model.llm(inputs_embeds=embeds).logits  # (1, 45, V)
        reference = meta_llama_logits(state, embeds, n_heads=config.llm.num_heads, norm_eps=config.llm.rms_norm_eps)
        torch.testing.assert_close(logits, reference, atol=1e-4, rtol=1e-4)
        # the comparison is sensitive to the permutation: unpermuted q/k give different logits
        unpermuted = {f"model.layers.{i}.self_attn.{p}_proj.weight": state[f"llma.layers.{i}.attention.w{p}.weight"]
                      for i in range(config.llm.num_layers) for p in "qk"}
        model.llm.load_state_dict(unpermuted, strict=False)
        assert (model.llm(inputs_embeds=embeds).logits - reference).abs().max() > 1e-2


def test_unknown_key_is_an_error(synthetic, tokenizer_file, tmp_path):
    config, state, _ = synthetic
    path = tmp_path / "extra.pth"
    torch.save({**state, "llma.extra_head.weight": torch.zeros(2)}, path)
    with pytest.raises(ConversionError, match=r"not covered by the mapping \(1\):\s+llma\.extra_head\.weight"):
        convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=config)
    assert not (tmp_path / "out").exists()


def test_missing_key_and_shape_mismatch_are_errors(synthetic, tokenizer_file, tmp_path):
    config, state, _ = synthetic
    broken = {k: v for k, v in state.items() if k != "llma.routers.rgbn.fc2.bias"}
    broken["llma.tok_embeddings.weight"] = torch.zeros(config.llm.vocab_size + 1, config.llm.hidden_size)
    path = tmp_path / "broken.pth"
    torch.save(broken, path)
    with pytest.raises(ConversionError) as info:
        convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=config)
    msg = str(info.value)
    assert re.search(r"missing keys \(1\):\s+llma\.routers\.rgbn\.fc2\.bias\n", msg)
    assert "llm.vocab_size" in msg and "llma.tok_embeddings.weight" in msg
    assert not (tmp_path / "out").exists()


class _Box(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript(state: dict[str, torch.Tensor]) -> torch.jit.ScriptModule:
    """A TorchScript archive holding ``state`` under its dotted names, like OpenAI's ViT-L-14.pt."""
    root = _Box()
    for name, t in state.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, _Box())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(t, requires_grad=False))
    return torch.jit.script(root)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["torch", "safetensors", "torchscript"])
def test_clip_is_required_and_used_when_the_file_lacks_it(synthetic, tokenizer_file, tmp_path, fmt):
    config, state, _ = synthetic
    path = tmp_path / "no_clip.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("llma.clip.visual.")}, path)
    with pytest.raises(ConversionError, match="--clip"):
        convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=config)
    visual = {k.removeprefix("llma.clip."): torch.randn(v.shape) for k, v in state.items()
              if k.startswith("llma.clip.visual.")}
    text = {"token_embedding.weight": torch.zeros(3, 2), "logit_scale": torch.zeros(())}  # ignored: not visual.*
    clip = tmp_path / ("clip.safetensors" if fmt == "safetensors" else "clip.pt")
    if fmt == "torch":  # an open_clip training checkpoint: under "state_dict", DDP "module." prefix
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in {**visual, **text}.items()}}, clip)
    elif fmt == "safetensors":
        save_file({**visual, **text}, str(clip))
    else:
        _torchscript({**visual, **text}).save(str(clip))
    report = convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=config, clip=clip)
    out = read_weights(tmp_path / "out")
    for k, v in visual.items():
        assert torch.equal(out["encoder." + k.removeprefix("visual.")], v), k
    assert report["clip"]["files"] == [str(clip)] and report["clip"]["keys"] == len(visual)
    OneLLM.from_pretrained(tmp_path / "out")


class _Malicious:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_running(tokenizer_file, tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "consolidated.00-of-01.pth"
    payload = {"llma.norm.weight": _Malicious(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ConversionError, match=r"consolidated\.00-of-01\.pth: refused.*executable code"):
        convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=target_config())
    assert not marker.exists()


def test_ten_shard_variant_converts_to_the_same_weights(synthetic, converted, tokenizer_file, tmp_path):
    config, state, _ = synthetic
    shards = tmp_path / "OneLLM-7B-hf"
    shards.mkdir()
    names = list(state)
    for s in range(10):
        torch.save({k: state[k] for k in names[s::10]}, shards / f"consolidated.00-of-01.s{s}.pth")
    report = convert_checkpoint([shards], tokenizer_file, tmp_path / "out", config=config, max_shard_size="1MB")
    assert [Path(s["path"]).name for s in report["sources"]] == [f"consolidated.00-of-01.s{s}.pth" for s in range(10)]
    assert report["weights"] == converted[1]["weights"]
    single, sharded = read_weights(converted[0]), read_weights(tmp_path / "out")
    assert single.keys() == sharded.keys() and all(torch.equal(single[k], sharded[k]) for k in single)


def test_legacy_file_and_training_checkpoint(synthetic, tokenizer_file, tmp_path):
    config, state, _ = synthetic
    path = tmp_path / "checkpoint.pth"  # pre-zip serialization (cannot be memory-mapped), {"model": ...} wrapper
    torch.save({"model": state, "epoch": 1}, path, _use_new_zipfile_serialization=False)
    report = convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=config)
    assert report["sources"][0]["memory_mapped"] is False and report["sources"][0]["keys"] == len(state)
    OneLLM.from_pretrained(tmp_path / "out")


def test_streams_one_tensor_at_a_time(synthetic, tokenizer_file, tmp_path, monkeypatch):
    """Converted tensors are produced lazily and released once written: never the whole state dict at once."""
    import onellm.convert as conv

    config, state, path = synthetic
    load_kwargs = []
    real_load, real_convert = torch.load, conv.convert_tensor
    monkeypatch.setattr(torch, "load", lambda *a, **kw: load_kwargs.append(kw) or real_load(*a, **kw))
    alive, peak, made = [0], [0], [0]

    def tracked(*args, **kwargs):
        t = real_convert(*args, **kwargs)  # fp32 -> fp16: always a new tensor
        alive[0] += 1
        made[0] += 1
        peak[0] = max(peak[0], alive[0])
        weakref.finalize(t, lambda: alive.__setitem__(0, alive[0] - 1))  # runs when the tensor is freed
        return t

    monkeypatch.setattr(conv, "convert_tensor", tracked)
    convert_checkpoint([path], tokenizer_file, tmp_path / "out", config=config, dtype="fp16", max_shard_size=1)
    assert load_kwargs == [{"map_location": "cpu", "weights_only": True, "mmap": True}]
    assert made[0] == len(state) - 6
    assert peak[0] <= 3, f"{peak[0]} converted tensors alive at once"  # each in its own shard here


def test_cli_end_to_end(tokenizer_file, tmp_path, capsys):
    from onellm import cli
    from onellm.commands import convert as command

    config = official_config("tiny")
    path = tmp_path / "consolidated.00-of-01.pth"
    torch.save(synthetic_state(config, seed=2), path)
    argv = ["convert", "--official", str(path), "--tokenizer", str(tokenizer_file), "--out", str(tmp_path / "m"),
            "--preset", "tiny", "--dtype", "bf16", "--max-shard-size", "10MB"]
    if "convert" in cli.COMMANDS:
        rc = cli.main(argv)
    else:  # until the lead registers the command
        parser = argparse.ArgumentParser()
        command.add_arguments(parser)
        rc = command.run(parser.parse_args(argv[1:]))
    assert rc == 0, capsys.readouterr().err
    assert "converted" in capsys.readouterr().out
    model = OneLLM.from_pretrained(tmp_path / "m")
    assert model.config.inputs.point.sampling == "rgb" and model.config.legacy_prompt
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    bad = ["--official", str(tmp_path / "nope.pth"), "--tokenizer", str(tokenizer_file), "--out", str(tmp_path / "n")]
    assert command.run(parser.parse_args(bad)) == 2
    assert "nope.pth: no such file" in capsys.readouterr().err
